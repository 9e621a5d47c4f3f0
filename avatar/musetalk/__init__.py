"""MuseTalk 1.5 behind the `Renderer` contract: single-step latent inpainting of the lower face, driven by Whisper.

Everything here imports torch lazily (inside functions), so the default install without the neural stack
can still import the package and tell the user to run `make neural`.
"""
