"""Style tokens (Chang): the style encoder, its tokens and their injection into prompts."""
