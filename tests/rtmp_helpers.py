"""A real RTMP server for tests: FFmpeg's own (PyAV's bundled build) listening on loopback."""

from __future__ import annotations

import socket
import threading

import av
import numpy as np

KEY = "test-key-42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Listener:
    """One publisher's stream, decoded as it arrives; `stop_after` video frames, then it hangs up."""

    def __init__(self, port: int, stop_after: int | None = None) -> None:
        self.url = f"rtmp://127.0.0.1:{port}/live/{KEY}"
        self.stop_after = stop_after
        self.codecs: dict[str, str] = {}
        self.video: list[tuple[int, float]] = []
        """(pts in ms, mean brightness) per decoded frame."""
        self.audio: list[tuple[int, np.ndarray]] = []
        """(pts in ms, samples) per decoded AAC block."""
        self.listening = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.listening.wait(5)

    def _run(self) -> None:
        self.listening.set()
        try:
            with av.open(self.url, mode="r", format="flv", options={"listen": "1", "timeout": "30"}) as container:
                self.codecs = {s.type: s.codec_context.name for s in container.streams}
                for packet in container.demux():
                    if not packet.size:
                        continue
                    for frame in packet.decode():
                        if packet.stream.type == "video":
                            self.video.append((frame.pts, float(frame.to_ndarray(format="gray").mean())))
                        else:
                            self.audio.append((frame.pts, frame.to_ndarray()[0]))
                    if self.stop_after and len(self.video) >= self.stop_after:
                        return
        except OSError:
            return  # FFmpeg ends a publisher's clean close with EIO: end of stream

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout: float = 30.0) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the listener never saw the stream end"
