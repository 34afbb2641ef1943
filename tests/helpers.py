"""Two sessions joined in memory, in the spirit of h11's ConnectionPair."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from p2pchat.core.messages import Ack, Hello, Message, Text
from p2pchat.core.session import Event, Session


def key(byte: int) -> X25519PrivateKey:
    """A fixed private key, so runs are repeatable."""
    return X25519PrivateKey.from_private_bytes(bytes([byte]) * 32)


class SessionPair:
    """An initiator and a responder; ``handshake()`` runs the whole handshake between them."""

    def __init__(self, psk_i: bytes | None = None, psk_r: bytes | None = None, rekey_interval: int = 1000) -> None:
        self.alice = Session(
            initiator=True,
            static_key=key(1),
            hello=Hello("alice", "test"),
            psk=psk_i,
            ephemeral=key(3),
            rekey_interval=rekey_interval,
        )
        self.bob = Session(
            initiator=False,
            static_key=key(2),
            hello=Hello("bob", "test"),
            psk=psk_r,
            ephemeral=key(4),
            rekey_interval=rekey_interval,
        )
        self.wire: list[bytes] = []  # every chunk that crossed, in order

    def handshake(self) -> tuple[list[Event], list[Event]]:
        """Run the handshake; return the events each side saw (bob's first)."""
        bob_events = self._carry(self.alice, self.bob)  # -> e
        alice_events = self._carry(self.bob, self.alice)  # <- e, ee, s, es
        bob_events += self._carry(self.alice, self.bob)  # -> s, se, hello
        alice_events += self._carry(self.bob, self.alice)  # hello
        return bob_events, alice_events

    def _carry(self, sender: Session, receiver: Session) -> list[Event]:
        data = sender.data_to_send()
        self.wire.append(data)
        return receiver.receive_data(data)

    def deliver(self, sender: Session, receiver: Session, message: Message) -> list[Event]:
        """Send *message*, deliver it, and answer any text with its ack, as the threads do."""
        data = sender.send(message)
        self.wire.append(data)
        events = receiver.receive_data(data)
        for event in events:
            if isinstance(event, Text):
                ack = receiver.send(Ack(event.id))
                self.wire.append(ack)
                events_back = sender.receive_data(ack)
                assert events_back == [Ack(event.id)]
        return events
