"""Types shared by `speech`, `avatar`, `streaming` and `agent`; depends on none of them."""
