"""Getting frames and audio to people: MP4 recording (and, later, the live websocket server)."""
