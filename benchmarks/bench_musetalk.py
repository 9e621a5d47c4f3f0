"""What MuseTalk costs per stage on this CPU: the tiny test networks and the published network sizes.

No real weights can be downloaded here, so both configurations are randomly initialised; the cost of a network
pass does not depend on its weights, only on its shapes, so the published configs (MuseTalk 1.5's UNet,
sd-vae-ft-mse, whisper-tiny) give what a CPU would really spend. Both are saved in the official folder layout
and loaded by the engine's own code. Stages, batch 1 unless stated, median of repeats (wall-clock and CPU time;
the machine's two cores are shared, so CPU time is the steadier figure):

- Whisper features per second of audio (1 s blocks with their context, each padded to Whisper's 30 s window);
- UNet pass per frame; VAE decode per frame; both together at the configured batch of 4, per frame;
- VAE encodes per template frame (preparation);
- the whole renderer per speech frame (features, networks, paste-back) through `render_next`.

    .venv/bin/python benchmarks/bench_musetalk.py [--threads 1] [--skip-real]

Writes benchmarks/results/musetalk.md. The published-size weights (~3.6 GB) are written once to
$TMPDIR/musetalk-bench-real and reused.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
RESULTS = ROOT / "benchmarks" / "results"

from musetalk_tiny import TINY_UNET, TINY_VAE, TINY_WHISPER, build_tiny_weights  # noqa: E402

PUBLISHED_UNET: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel",
    "in_channels": 8,
    "out_channels": 4,
    "sample_size": 64,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": 384,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "downsample_padding": 1,
}
"""MuseTalk 1.5's musetalk.json as documented (shared/notes/gpu-engines.md)."""
SD_VAE_FT_MSE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 256,
}
WHISPER_TINY: dict[str, Any] = {
    "d_model": 384,
    "encoder_layers": 4,
    "encoder_attention_heads": 6,
    "encoder_ffn_dim": 1536,
    "decoder_layers": 4,
    "decoder_attention_heads": 6,
    "decoder_ffn_dim": 1536,
    "num_mel_bins": 80,
    "max_source_positions": 1500,
    "max_target_positions": 448,
    "vocab_size": 51865,
    "pad_token_id": 50257,
    "bos_token_id": 50257,
    "eos_token_id": 50257,
    "decoder_start_token_id": 50258,
}
AUDIO_SECONDS = 4.0


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall-clock and CPU seconds of `fn` over `repeats` runs (after one warm-up run)."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def bench(name: str, weights: Path, cache: Path, repeats: int, frames: int) -> dict[str, Any]:
    import torch

    from agent.renderers import prepare
    from avatar.musetalk.audio import StreamingFeatures
    from avatar.musetalk.networks import load_networks, positional_encoding
    from avatar.musetalk.prepare import MuseTalkAvatar
    from avatar.musetalk.renderer import MuseTalkRenderer
    from avatar.musetalk.weights import locate
    from core.audio import read_audio_file
    from core.config import load_config

    row: dict[str, Any] = {"name": name}
    start = time.perf_counter()
    nets = load_networks(locate(weights), "cpu", fp16=False)
    row["load"] = time.perf_counter() - start
    row["params"] = sum(p.numel() for m in (nets.unet, nets.vae, nets.whisper) for p in m.parameters()) / 1e6
    cfg = load_config(
        overrides={
            "renderer": {"engine": "musetalk", "liveliness": 0},  # one template: the stages cost the same per frame
            "musetalk": {"weights_dir": str(weights), "device": "cpu", "batch_size": 4},
            "avatar": {"cache_dir": str(cache)},
        },
        environ={},
    )
    speech = read_audio_file(ROOT / "tests/data/audio/en/quick_brown_fox.wav", 24_000)[: int(AUDIO_SECONDS * 24_000)]

    def features() -> None:
        f = StreamingFeatures(nets.whisper_states, nets.audio_layers, nets.audio_dim)
        f.append(speech)
        f.tokens(range(int(AUDIO_SECONDS * 25)), 25)

    wall, cpu = timed(features, repeats)
    row["whisper"] = (wall / AUDIO_SECONDS, cpu / AUDIO_SECONDS)

    rng = np.random.default_rng(0)
    tokens = 10 * nets.audio_layers
    audio = torch.from_numpy(
        (rng.standard_normal((1, tokens, nets.audio_dim)) + positional_encoding(tokens, nets.audio_dim)).astype(
            np.float32
        )
    )
    latents = torch.from_numpy(rng.standard_normal((1, 8, 32, 32)).astype(np.float32))
    with torch.inference_mode():
        row["unet"] = timed(lambda: nets.unet(latents, torch.zeros(()), encoder_hidden_states=audio), repeats)
        row["decode"] = timed(lambda: nets.vae.decode(latents[:, :4]), repeats)
    inputs4 = rng.standard_normal((4, 8, 32, 32)).astype(np.float32)
    tokens4 = rng.standard_normal((4, tokens, nets.audio_dim)).astype(np.float32)
    wall, cpu = timed(lambda: nets.generate(inputs4, tokens4), repeats)
    row["batch4"] = (wall / 4, cpu / 4)
    crops = rng.integers(0, 256, (1, 256, 256, 3), dtype=np.uint8)
    row["encode"] = timed(lambda: (nets.encode(crops, half_mask=True), nets.encode(crops)), repeats)

    avatar, _ = prepare(cfg, ROOT / "assets/avatars/astronaut.png")
    assert isinstance(avatar, MuseTalkAvatar)

    def render() -> None:
        r = MuseTalkRenderer(avatar, fps=25, batch_size=4)
        r.feed(speech[: frames * 960])
        for _ in range(frames):
            r.render_next()

    wall, cpu = timed(render, max(1, repeats // 2))
    row["frame"] = (wall / frames, cpu / frames)
    row["frames"] = frames
    return row


def fmt(pair: tuple[float, float], unit: float = 1000.0) -> str:
    return f"{pair[0] * unit:,.0f} / {pair[1] * unit:,.0f}"


def write(rows: list[dict[str, Any]], threads: int, load: tuple[float, ...]) -> Path:
    lines = [
        "# MuseTalk on this CPU (random weights, tiny and published sizes)",
        "",
        f"`benchmarks/bench_musetalk.py`, torch {threads} thread(s), fp32, batch 1 unless stated; median of repeats, "
        f"milliseconds as wall-clock / CPU time. Load average at the end: {' '.join(f'{v:.2f}' for v in load)} "
        "(2 cores shared with other agents: wall-clock is noisy, CPU time steadier). Weights are random: the cost "
        "of a pass depends only on the shapes, so the published sizes show what a CPU really spends; they say "
        "nothing about quality.",
        "",
        "| stage | " + " | ".join(r["name"] for r in rows) + " |",
        "|---|" + "---|" * len(rows),
        "| parameters (UNet + VAE + Whisper encoder) | " + " | ".join(f"{r['params']:,.1f} M" for r in rows) + " |",
        "| loading the networks (s) | " + " | ".join(f"{r['load']:.1f}" for r in rows) + " |",
        "| Whisper features per second of audio | " + " | ".join(fmt(r["whisper"]) for r in rows) + " |",
        "| UNet pass per frame | " + " | ".join(fmt(r["unet"]) for r in rows) + " |",
        "| VAE decode per frame | " + " | ".join(fmt(r["decode"]) for r in rows) + " |",
        "| UNet + VAE per frame at batch 4 | " + " | ".join(fmt(r["batch4"]) for r in rows) + " |",
        "| VAE encodes per template frame (preparation) | " + " | ".join(fmt(r["encode"]) for r in rows) + " |",
        "| whole renderer per speech frame (`render_next`, batch 4) | "
        + " | ".join(f"{fmt(r['frame'])} ({r['frames']} frames)" for r in rows)
        + " |",
        "| frames per second (renderer, wall / CPU) | "
        + " | ".join(f"{1 / r['frame'][0]:.2f} / {1 / r['frame'][1]:.2f}" for r in rows)
        + " |",
        "",
        "Real time at 25 fps needs 40 ms per frame including the audio features.",
        "",
    ]
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "musetalk.md"
    path.write_text("\n".join(lines))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-real", action="store_true", help="only the tiny test networks")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tiny = build_tiny_weights(Path(tmp) / "tiny", 0, TINY_UNET, TINY_VAE, TINY_WHISPER)
        rows.append(bench("tiny test networks", tiny, Path(tmp) / "cache", args.repeats, 24))
        print(rows[-1], flush=True)
        if not args.skip_real:
            real = Path(tempfile.gettempdir()) / "musetalk-bench-real"
            if not (real / "whisper" / "preprocessor_config.json").is_file():
                build_tiny_weights(real, 0, PUBLISHED_UNET, SD_VAE_FT_MSE, WHISPER_TINY)
            rows.append(bench("published sizes", real, Path(tmp) / "cache", max(3, args.repeats // 2), 4))
            print(rows[-1], flush=True)
    print(f"wrote {write(rows, args.threads, os.getloadavg())}")


if __name__ == "__main__":
    main()
