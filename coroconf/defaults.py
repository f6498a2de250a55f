"""Every default value, in one place, with corosync 3.1's numbers.

Names follow the corosync.conf keys. Where corosync computes a value from
others (token_retransmit, hold, consensus, knet ping timers, the udp
multicast address) the formula lives in :mod:`coroconf._derive`, and the
constants it needs are here. Sources: corosync exec/totemconfig.c (v3.1.9)
and the man pages corosync.conf(5) and votequorum(5).
"""

from __future__ import annotations

# --- totem timers (milliseconds) ---------------------------------------
TOKEN_MS = 3000
TOKEN_COEFFICIENT_MS = 650
TOKEN_WARNING_PERCENT = 75
TOKEN_RETRANSMITS_BEFORE_LOSS_CONST = 4
JOIN_MS = 50
SEND_JOIN_MS = 0
MERGE_MS = 200
DOWNCHECK_MS = 1000
MAX_NETWORK_DELAY_MS = 50
#: corosync's clock tick: HZ is 100 on Linux, so one jiffy is 10 ms. The
#: derived hold time subtracts one jiffy, and the minimum timeout is three.
JIFFY_MS = 10
MINIMUM_TIMEOUT_MS = 3 * JIFFY_MS  # 30 ms
MINIMUM_TIMEOUT_HOLD_MS = int(MINIMUM_TIMEOUT_MS * 0.8 - JIFFY_MS)  # 14 ms
#: consensus defaults to this many tokens; the man page asks for at least it.
CONSENSUS_PER_TOKEN = 1.2

# --- totem counters -------------------------------------------------------
FAIL_RECV_CONST = 2500
SEQNO_UNCHANGED_CONST = 30
HEARTBEAT_FAILURES_ALLOWED = 0
WINDOW_SIZE = 50
MAX_MESSAGES = 17
MISS_COUNT_CONST = 5

# --- totem network ---------------------------------------------------------
VERSION = 2
TRANSPORT = "knet"  # corosync 3's default
NETMTU_UDP = 1500
NETMTU_KNET = 65536
MCASTPORT = 5405
TTL = 1
IP_VERSION_UDP = "ipv4"
IP_VERSION_OTHER = "ipv6-4"  # knet and udpu
IP_DSCP = 0
LINK_MODE = "passive"
MAX_LINKS = 8  # knet; udp and udpu have one
BLOCK_UNLISTED_IPS = True
CANCEL_TOKEN_HOLD_ON_RETRANSMIT = False
CLEAR_NODE_HIGH_BIT = False
CONFIG_VERSION = 0

# --- crypto (corosync 3.1 builds default to unencrypted) -------------------
CRYPTO_MODEL = "nss"
CRYPTO_CIPHER = "none"
CRYPTO_HASH = "none"
SECAUTH_CIPHER = "aes256"  # what "secauth: on" implies
SECAUTH_HASH = "sha256"
KEYFILE = "/etc/corosync/authkey"
KEY_MIN_BYTES = 128  # knet's bounds, corosync-keygen's range
KEY_MAX_BYTES = 4096

# --- knet link options -------------------------------------------------------
KNET_LINK_PRIORITY = 1
KNET_PING_PRECISION = 2048
KNET_PONG_COUNT = 2
KNET_TRANSPORT = "udp"
KNET_PMTUD_INTERVAL_S = 30
KNET_MTU = 0  # 0: automatic
KNET_MTU_MIN = 576  # the smallest link MTU knet mode cuts frames for (IPv4's minimum datagram)
KNET_COMPRESSION_MODEL = "none"
KNET_COMPRESSION_THRESHOLD_BYTES = 0  # 0: knet's own default (100 bytes)
KNET_COMPRESSION_LEVEL = 0

# --- quorum (votequorum) -----------------------------------------------------
QUORUM_VOTES = 1
LAST_MAN_STANDING_WINDOW_MS = 10000
AUTO_TIE_BREAKER_NODE = "lowest"
DEVICE_VOTES = 1
DEVICE_TIMEOUT_MS = 10000
DEVICE_SYNC_TIMEOUT_MS = 30000

# --- logging -----------------------------------------------------------------
TIMESTAMP = "hires"
FILELINE = False
FUNCTION_NAME = False
BLACKBOX = True
TO_STDERR = True
TO_LOGFILE = False
TO_SYSLOG = True
LOGFILE_PRIORITY = "info"
SYSLOG_FACILITY = "daemon"
SYSLOG_PRIORITY = "info"
DEBUG = "off"

# --- system --------------------------------------------------------------------
QB_IPC_TYPE = "native"
SCHED_RR = True  # corosync's; totemd applies SCHED_RR only when the file sets sched_rr: yes
MOVE_TO_ROOT_CGROUP = "auto"
ALLOW_KNET_HANDLE_FALLBACK = False
STATE_DIR = "/var/lib/corosync"
#: Not a corosync key: where our daemons put their sockets. Set it (with
#: state_dir) per node to run several nodes on one machine.
RUN_DIR = "/run/corosync"
