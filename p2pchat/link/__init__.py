"""Sockets and threads: listening, dialing, the handshake on a socket, and the chat's threads."""
