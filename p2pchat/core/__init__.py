"""The protocol, sans-IO: Noise, frames, messages and the session. Bytes in, events out.

Nothing here opens a socket, starts a thread or touches a terminal.
"""
