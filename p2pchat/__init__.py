"""p2pchat: an encrypted chat for two people, peer to peer, in the terminal.

Grouped by layer: ``core`` is the protocol, sans-IO; ``link`` holds the
sockets and threads; ``term`` the two interfaces; ``chat`` and ``cli`` wire them.
Nothing heavy is imported here, so ``--version`` and ``--help`` start fast.
"""

__version__ = "0.1.0"
CLIENT = f"p2pchat/{__version__}"  # what we put in hello's "client" field
