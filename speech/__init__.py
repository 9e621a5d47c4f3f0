"""Speech in and out: text segmentation, TTS with timings, visemes, ASR, voice activity."""
