"""p2pchat: an encrypted chat for two people, peer to peer, in the terminal.

The protocol core (``noise``, ``framing``, ``messages``, ``session``) is sans-IO;
``net`` holds the sockets and threads, ``ui`` and ``pipe`` the two interfaces,
``cli`` the command line. Nothing heavy is imported here, so ``--version`` and
``--help`` start fast.
"""

__version__ = "0.1.0"
CLIENT = f"p2pchat/{__version__}"  # what we put in hello's "client" field
