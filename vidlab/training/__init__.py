"""The zoo's training recipes and its measurements, above everything `vidlab.generate` needs.

- `common`: architectures, checkpoints, the training loop, batches;
- `from_scratch`: the image model's stages (VAE, text encoder, latents, UNet, ControlNet), `export`;
- `refine`: training on from the packaged zoo (UNet, VAE decoder, ControlNet);
- `motion`: the video model on shapes-world clips;
- `evaluation`: the zoo measured with the shapes-world analyzer (the model card's numbers).

Nothing below `vidlab.generate` imports this package (tests/test_layout.py checks it).
"""
