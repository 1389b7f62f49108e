"""Style-token trainers: stage 1 inversion, stage 2 encoder pre-training, stage 3 joint fine-tuning."""
