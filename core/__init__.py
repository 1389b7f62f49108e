"""Pure-torch model code, math and file formats. Never imports ComfyUI, nodes or trainers."""
