"""What the person sees: the full-screen interface, pipe mode, and making peer text safe to show.

No crypto is imported here.
"""
