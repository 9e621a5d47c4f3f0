"""Talking-head renderers: turn speech audio (and optional viseme timings) into lip-synced frames."""
