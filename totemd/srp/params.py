"""Timers and constants of Totem SRP (totem.md §2.3), with corosync 3's
defaults and derivations, as one frozen validated value.

Field names follow corosync.conf's totem section with the unit last
(``token`` -> ``token_ms``). A field left as ``None`` is derived the way
corosync derives it:

- ``token_ms`` is the configured token timeout; the effective one adds
  ``token_coefficient_ms`` for every node above two (``effective_token_ms``).
- ``token_retransmit_ms = token / (token_retransmits_before_loss_const + 0.2)``.
- ``hold_ms = 0.8 * token_retransmit - 1 jiffy`` (never below 1 ms).
- ``consensus_ms = 1.2 * token``.
- ``token_warning_ms = token_warning_percent% of the effective token`` (0: no
  warnings), the time without a token after which a warning is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from totemd.srp.errors import ParamsError

__all__ = ["TotemParams", "TOTEM_HEADER_BYTES", "RTR_LIST_MAX", "SORT_QUEUE_MAX"]

# Bytes our Totem header and mcast fields take (codec.MCAST_OVERHEAD, kept in
# step by a test); a recovery frame wraps a whole frame, so netmtu must leave
# room for two of them (totem.md §2.5 #16).
TOTEM_HEADER_BYTES = 32
# IP (20) + UDP (8) header subtracted from netmtu, as corosync's udpu does.
IP_UDP_HEADER_BYTES = 28
# Entries in the token's retransmit request list (corosync's cap).
RTR_LIST_MAX = 30
# Largest distance between the lowest undelivered and the highest seq a node
# accepts into its sort queue (corosync's QMAX); bounds memory per ring.
SORT_QUEUE_MAX = 16384
# Corosync's MINIMUM_TIMEOUT (3 jiffies at HZ=100) is for real kernels; the
# simulator runs much shorter virtual timeouts, so we only require >= 1 ms.
_JIFFY_MS = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TotemParams:
    """Every Totem timer (milliseconds) and constant (counts, bytes).

    Attributes:
        token_ms: token loss timeout before the per-node coefficient.
        token_coefficient_ms: added to the token timeout per node above 2.
        token_retransmits_before_loss_const: token retransmissions before loss.
        token_retransmit_ms: resend the last token after this long (derived).
        hold_ms: idle token hold period at the representative (derived).
        join_ms: rebroadcast period of join messages in GATHER.
        send_join_ms: each join waits a random 0..send_join_ms first (0: none;
            corosync advises ~80 ms on 128-node rings to avoid join bursts).
        consensus_ms: GATHER without agreement this long fails the silent (derived).
        merge_ms: period of merge-detect multicasts by an idle representative.
        fail_recv_const: rotations with a stuck aru before FAILED TO RECEIVE.
        seqno_unchanged_const: idle rotations before the token is held.
        window_size: frames per rotation, ring-wide.
        max_messages: frames one node may send per token visit.
        miss_count_const: token visits a seq must be seen missing before it is
            put on the retransmit list.
        netmtu: frame size on the wire, bytes.
        max_message_size: largest application message, bytes.
        max_queued_bytes: bound on the application bytes waiting to be sent.
        cancel_token_hold_on_retransmit: do not hold while retransmit requests
            are pending (corosync's option of the same name).
        nodes: number of configured nodes (for the token coefficient).
        token_warning_percent: report a token not received for this share of
            the effective token timeout, percent (corosync's token_warning;
            0 disables the warning).
    """

    token_ms: float = 3000.0
    token_coefficient_ms: float = 650.0
    token_retransmits_before_loss_const: int = 4
    token_retransmit_ms: float | None = None
    hold_ms: float | None = None
    join_ms: float = 50.0
    send_join_ms: float = 0.0
    consensus_ms: float | None = None
    merge_ms: float = 200.0
    fail_recv_const: int = 2500
    seqno_unchanged_const: int = 30
    window_size: int = 50
    max_messages: int = 17
    miss_count_const: int = 5
    netmtu: int = 1500
    max_message_size: int = 1 << 20
    max_queued_bytes: int = 16 << 20
    cancel_token_hold_on_retransmit: bool = False
    nodes: int = 2
    token_warning_percent: int = 75

    def __post_init__(self) -> None:
        """Fill the derived fields and validate everything.

        Raises:
            ParamsError: a value is out of range or inconsistent.
        """
        token = self.effective_token_ms
        if self.token_retransmit_ms is None:
            object.__setattr__(self, "token_retransmit_ms",
                               token / (self.token_retransmits_before_loss_const + 0.2))
        if self.hold_ms is None:
            hold = 0.8 * self.token_retransmit_ms - _JIFFY_MS
            object.__setattr__(self, "hold_ms", max(1.0, hold))
        if self.consensus_ms is None:
            object.__setattr__(self, "consensus_ms", 1.2 * token)
        self._validate()

    @property
    def effective_token_ms(self) -> float:
        """The token timeout in force: token + coefficient x (nodes - 2)."""
        extra = max(0, self.nodes - 2) * self.token_coefficient_ms
        return self.token_ms + extra

    @property
    def token_warning_ms(self) -> float:
        """Time without a token before it is reported, ms (0.0: never)."""
        return self.effective_token_ms * self.token_warning_percent / 100.0

    @property
    def frame_payload_max(self) -> int:
        """Largest packed payload of one frame, bytes: netmtu minus IP/UDP and
        two Totem headers (a recovery frame encapsulates a whole frame)."""
        return self.netmtu - IP_UDP_HEADER_BYTES - 2 * TOTEM_HEADER_BYTES

    def _validate(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool):
                continue
            if isinstance(value, (int, float)) and value < 0:
                raise ParamsError(f"{spec.name} ({value}) must not be negative")
        for name in ("token_ms", "token_retransmit_ms", "hold_ms", "join_ms",
                     "consensus_ms", "merge_ms"):
            if getattr(self, name) < 1.0:
                raise ParamsError(f"{name} ({getattr(self, name)} ms) must be at least 1 ms")
        for name in ("token_retransmits_before_loss_const", "fail_recv_const",
                     "seqno_unchanged_const", "window_size", "max_messages",
                     "miss_count_const", "nodes"):
            if getattr(self, name) < 1:
                raise ParamsError(f"{name} ({getattr(self, name)}) must be at least 1")
        if self.token_retransmit_ms >= self.effective_token_ms:
            raise ParamsError(
                f"token_retransmit_ms ({self.token_retransmit_ms} ms) must be below the "
                f"token timeout ({self.effective_token_ms} ms)")
        if self.consensus_ms < self.join_ms:
            raise ParamsError(
                f"consensus_ms ({self.consensus_ms} ms) must be at least join_ms "
                f"({self.join_ms} ms)")
        if self.nodes >= 3 and self.consensus_ms < 1.2 * self.effective_token_ms - 1e-9:
            raise ParamsError(
                f"consensus_ms ({self.consensus_ms} ms) must be at least 1.2 x token "
                f"({1.2 * self.effective_token_ms} ms) with 3 or more nodes")
        if self.token_warning_percent > 100:
            raise ParamsError(f"token_warning_percent ({self.token_warning_percent}) must be "
                              "within 0 (no warnings) .. 100")
        if self.max_messages > self.window_size:
            raise ParamsError(
                f"max_messages ({self.max_messages}) must not exceed window_size "
                f"({self.window_size})")
        if self.window_size > SORT_QUEUE_MAX // 4:
            raise ParamsError(f"window_size ({self.window_size}) must be at most "
                              f"{SORT_QUEUE_MAX // 4}")
        if not 256 <= self.netmtu <= 65536:
            raise ParamsError(f"netmtu ({self.netmtu} bytes) must be within 256..65536")
        if self.max_queued_bytes < self.max_message_size:
            raise ParamsError(
                f"max_queued_bytes ({self.max_queued_bytes}) must be at least "
                f"max_message_size ({self.max_message_size})")
