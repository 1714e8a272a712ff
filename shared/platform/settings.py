"""Settings for every service, read from the environment (pydantic-settings).

Variables use the ``ONEDOOR_`` prefix (``ONEDOOR_TOPIC_PARTITIONS=12``), except the two
connection settings that operators know by their usual names: ``KAFKA_BOOTSTRAP_SERVERS``
and ``DATABASE_URL`` (``ONEDOOR_``-prefixed spellings work too). Defaults point at the
local stack started by ``make stack-up``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, TypedDict
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.platform.secret_files import read_secret

LOCAL_KAFKA = "127.0.0.1:29092"
LOCAL_KAFKA_SECRETS = Path(".data/secrets/kafka")
LOCAL_DATABASE_URL = "postgresql://postgres@127.0.0.1:25432/onedoor"
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class ConfigError(ValueError):
    """A setting is missing or inconsistent: the message names it (a service stops at
    start-up with it, exit 2)."""


class ApiPages(TypedDict):
    """FastAPI's arguments for its interactive API pages (None: not served)."""

    docs_url: str | None
    redoc_url: str | None
    openapi_url: str | None


class Settings(BaseSettings):
    """Everything a onedoor process can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix="ONEDOOR_", frozen=True, extra="ignore", populate_by_name=True
    )

    kafka_bootstrap_servers: str = Field(
        default=LOCAL_KAFKA,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "ONEDOOR_KAFKA_BOOTSTRAP_SERVERS"),
        description="Comma-separated host:port list of Kafka brokers.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="SASL_PLAINTEXT",
        description="How clients reach the brokers: SASL_SSL in production, SASL_PLAINTEXT "
        "on the local stack's loopback listener; PLAINTEXT only for a broker without "
        "authentication (no principals, no ACLs).",
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        default="SCRAM-SHA-512",
        description="SASL mechanism of this process's principal (the services: SCRAM-SHA-512).",
    )
    kafka_username: str | None = Field(
        default=None,
        description="The Kafka principal this process connects as. Default: a service's own "
        "name (intake, router, audit, a department); a tool names its principal.",
    )
    kafka_password_file: Path | None = Field(
        default=None,
        description="The principal's password (a mounted secret, mode 0600, read once, "
        "never logged); default <kafka_secrets_dir>/<principal>.password.",
    )
    kafka_secrets_dir: Path = Field(
        default=LOCAL_KAFKA_SECRETS,
        description="Folder of <principal>.password files (the local stack makes them).",
    )
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="SASL_SSL: the CA bundle that signed the brokers' certificates."
    )
    kafka_ssl_certfile: Path | None = Field(
        default=None, description="SASL_SSL: a client certificate, when the brokers ask for one."
    )
    kafka_ssl_keyfile: Path | None = Field(
        default=None, description="SASL_SSL: the client certificate's private key (mode 0600)."
    )
    database_url: SecretStr = Field(
        default=SecretStr(LOCAL_DATABASE_URL),
        validation_alias=AliasChoices("DATABASE_URL", "ONEDOOR_DATABASE_URL"),
        description="PostgreSQL DSN; each service uses its own schema in this database, "
        "as its own role (postgresql://onedoor_<service>@host:port/db).",
    )
    database_user: str | None = Field(
        default=None,
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="The role to connect as, replacing DATABASE_URL's user: lets every "
        "service of a deployment share one DATABASE_URL (a ConfigMap) and name its own role "
        "(onedoor_<service>).",
    )
    database_password_file: Path | None = Field(
        default=None,
        description="File holding the password of DATABASE_URL's user (one mounted secret "
        "per service; refused when others may read it). It replaces any password in the "
        "URL and is never logged.",
    )
    database_sslmode: SslMode | None = Field(
        default=None,
        description="TLS to PostgreSQL, libpq's sslmode: verify-full for a remote server "
        "(certificate and host name checked). Unset: as DATABASE_URL says (asyncpg's "
        "default is prefer).",
    )
    database_ssl_root_cert: Path | None = Field(
        default=None,
        description="The CA certificate(s) the server's certificate must chain to "
        "(verify-ca, verify-full); unset: ~/.postgresql/root.crt, as libpq.",
    )
    audit_reader_role: str | None = Field(
        default=None,
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="The audit's HTTP reads run as this database role (SET LOCAL ROLE, in "
        "a read-only transaction): onedoor_auditor where deploy/dbroles.py provisioned "
        "the roles. Unset: as the audit's own role, still read-only.",
    )
    topic_prefix: str = Field(
        default="",
        description="Prepended to every topic name: isolates tests and side-by-side deployments.",
    )
    # Each fetch, offset commit and relay round names every partition it touches, and
    # each partition's records travel as a batch of their own: 4 partitions took less
    # machine CPU per case than 6 under load (docs/performance.md). Partitions also cap
    # the replicas of one service that share the work, and a replay's processes (verify).
    topic_partitions: int = Field(
        default=4,
        ge=1,
        description="Partitions of each event topic created at start-up: the most replicas "
        "of one service that share its work.",
    )
    topic_replication: int = Field(default=1, ge=1, description="Replication factor of topics.")
    topic_min_insync_replicas: int = Field(
        default=1, ge=1, description="min.insync.replicas of each topic created (2 in production)."
    )
    consumer_max_records: int = Field(
        default=500, ge=1, description="Records taken per batch: one DB transaction each."
    )
    consumer_batch_timeout_ms: int = Field(
        default=10,
        ge=0,
        description="How long a consumer lingers to fill a batch that is not full "
        "(latency per hop, traded for fewer transactions per record under load).",
    )
    consumer_fetch_min_bytes: int = Field(
        default=1,
        ge=1,
        description="Bytes the broker gathers before answering a service's fetch "
        "(it answers anyway after consumer_fetch_max_wait_ms).",
    )
    consumer_fetch_max_wait_ms: int = Field(
        default=500,
        ge=0,
        description="Longest wait for consumer_fetch_min_bytes. 16 KiB / 20 ms cost the "
        "broker more CPU at low rates (a fetch every 20 ms per consumer) and gained "
        "nothing under load, where batches fill anyway while a transaction runs "
        "(docs/performance.md).",
    )
    consumer_pattern_refresh_ms: int = Field(
        default=10_000,
        ge=100,
        description="How often a pattern subscriber (the audit) re-reads the broker's "
        "topic list: the longest a topic created after it started goes unread.",
    )
    # A relay hands the producer its whole round before it awaits the acknowledgements,
    # so the round travels as one request without lingering; lingering only delayed
    # every hop, and saved no CPU under load (docs/performance.md).
    producer_linger_ms: int = Field(
        default=0,
        ge=0,
        description="How long a relay's producer waits for more records before it sends "
        "what it holds (the relay's whole round is already there).",
    )
    outbox_poll_interval_s: float = Field(
        default=0.5, gt=0, description="Relay poll period when nothing woke it up."
    )
    outbox_batch_size: int = Field(
        default=1000, ge=1, description="Outbox rows a relay publishes per round."
    )
    max_record_bytes: int = Field(
        default=1 << 20,
        ge=256 * 1024,
        description="The one size budget (shared.platform.limits): the largest record a "
        "service may publish (value, key and headers), the producers' max_request_size and "
        "the topics' max.message.bytes. Intake's body limit and the form's limits are "
        "derived from it, with room left for what a case grows into on its way.",
    )
    audit_nice: int = Field(
        default=19,
        ge=0,
        le=19,
        description="CPU niceness the audit service gives itself at start (0 = normal). "
        "It only observes the log, so on a host it shares with the pipeline it yields "
        "the CPU while cases are waiting, falls behind during a burst and catches up "
        "after; the pipeline kept up with a burst more often at 19 "
        "than at 10 or 0 (docs/performance.md). Its PostgreSQL backends get the "
        "same niceness when they run on this host and it may renice them. In "
        "containers, set the CPU weight instead (it is per cgroup).",
    )
    audit_clock_skew_s: float = Field(
        default=300.0,
        ge=0,
        description="How far apart two clocks may be before verify calls it a time fault "
        "(clock_skew): an event dated before the event that caused it, or after Kafka "
        "logged it, by more than this.",
    )
    audit_stall_after_s: float = Field(
        default=900.0,
        gt=0,
        description="How long the router may owe a case its next move (route an accepted "
        "case, assign the step after an approval, close after the last decision) before "
        "verify reports it as stalled_case.",
    )
    audit_checkpoint_every_s: float = Field(
        default=60.0,
        ge=0,
        description="The audit service signs a checkpoint of its store on the log "
        "(audit.checkpoints: per partition, the offset reached, the rows stored and their "
        "digest) at the first batch this many seconds after the previous one, and at a "
        "clean shutdown; verify holds the store to every checkpoint (checkpoint_mismatch).",
    )
    audit_checkpoint_every_rows: int = Field(
        default=10_000,
        ge=1,
        description="... or after this many records ingested since the previous checkpoint, "
        "whichever comes first.",
    )
    audit_catalogue_archive: Path | None = Field(
        default=None,
        description="A folder of published catalogue versions (<version>.json, written by "
        "python -m services.audit.catalogues) beside services/audit/catalogues: verify "
        "judges each case by the catalogue version that routed it.",
    )
    audit_verify_every_s: int = Field(
        default=600,
        ge=0,
        description="The audit service runs onedoor-audit verify (in a child process, one "
        "replay process) at start and then this often, and keeps each result for the "
        "dashboard's last verification; 0 = never (run it by hand).",
    )
    audit_url: str = Field(
        default="",
        pattern=r"^(https?://[^\s/?#]+/?)?$",
        description="Where intake's pages reach the audit's HTTP API (e.g. "
        "http://audit:8080): the dashboard (/desk/) and the window's community page "
        "read its figures there with the signed-in person's own token. Unset: those "
        "pages say the audit is not configured.",
    )
    chartjs_file: Path = Field(
        default=Path("/usr/share/javascript/chart.js/chart.min.js"),
        description="Chart.js 3 (Debian's libjs-chart.js), served by intake at "
        "/static/pages/chart.js for the dashboard's charts. Missing: a warning at start "
        "and pages with the figures' tables only.",
    )
    db_pool_min: int = Field(
        default=1, ge=0, description="PostgreSQL connections a service keeps open."
    )
    db_pool_max: int = Field(
        default=8, ge=1, description="Most PostgreSQL connections a service opens."
    )
    keys_dir: Path = Field(
        default=Path(".data/keys"),
        description="Ed25519 private keys (<service>.key, mode 0600) and, by default, "
        "the key registry (registry.json); made by onedoor-keys generate.",
    )
    key_registry: Path | None = Field(
        default=None,
        description="The registry of public keys every verifier trusts (default: "
        "registry.json in the keys folder).",
    )
    signing_key_file: Path | None = Field(
        default=None,
        description="This service's private key file (default: <keys dir>/<service>.key).",
    )
    catalogue_dirs: tuple[Path, ...] = Field(
        default=(),
        description="Extra folders holding department packages (<dir>/<department>/"
        "catalogue.yaml) beside those under services/; JSON list in the environment.",
    )
    calendar_dir: Path | None = Field(
        default=None,
        description="Folder of the working-day calendars (<year>.yaml: public holidays and "
        "weekend days worked); default the shipped shared/contracts/calendars.",
    )
    test_working_day_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Tests only: count a working day as this many seconds (every day one), "
        "so promises fall due within a test; never set in production.",
    )
    deadlines_poll_s: float = Field(
        default=5.0,
        gt=0,
        description="How often the deadline service looks for warnings and misses due.",
    )
    deadlines_grace_s: float = Field(
        default=60.0,
        ge=0,
        description="How long past a step's due time (or warning time) the deadline "
        "service waits before announcing it: an outcome decided in time may still be on "
        "its way through the log.",
    )
    fault_crash_point: str = Field(
        default="", description="Tests only: a crash point (shared.platform.faults) to die at."
    )
    fault_crash_after: int = Field(default=1, ge=1, description="Tests only: die the Nth time.")
    fault_slow_action_s: float = Field(
        default=0.0, ge=0, description="Tests only: department handlers sleep this long."
    )
    log_level: str = Field(default="INFO", description="Log level (DEBUG, INFO, WARNING, ERROR).")
    log_json: bool | None = Field(
        default=None, description="JSON log lines; by default only when stderr is not a terminal."
    )
    centre_id: str = Field(
        default="C01", description="Service-centre code printed on receipt numbers."
    )
    http_host: str = Field(
        default="127.0.0.1",
        description="Address intake, the audit and the health endpoints listen on "
        "(0.0.0.0 in a container).",
    )
    http_port: int = Field(default=8080, description="HTTP port of intake and the audit.")
    health_port: int = Field(default=0, description="Consumer services' /health port; 0 = off.")
    migrate_at_start: bool = Field(
        default=True,
        description="A service applies its schema's migrations and creates its topics at "
        "start (idempotent). false: it only waits until they are there, made by "
        "onedoor-migrate (the Kubernetes Job), and says so in its log.",
    )
    otel_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ONEDOOR_OTEL_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="OpenTelemetry traces: the OTLP/HTTP collector's base URL (spans go "
        "to <url>/v1/traces). Unset: tracing is off and costs nothing per record.",
    )
    otel_sample_ratio: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Share of new traces (cases posted at the window) recorded; the "
        "services downstream follow the window's decision (W3C traceparent's flag).",
    )
    http_max_connections: int = Field(
        default=1000,
        ge=1,
        description="Open connections and requests intake or the audit serves at once; "
        "past it a request gets 503.",
    )
    http_read_timeout_s: float = Field(
        default=30,
        gt=0,
        description="How long a request may take to arrive (headers and body, from its "
        "first byte or the connection) before the connection is closed.",
    )
    http_keepalive_s: int = Field(
        default=5, ge=1, description="How long an idle keep-alive connection stays open."
    )
    token_key_file: Path | None = Field(
        default=None,
        description="Intake's private Ed25519 key for staff access tokens (hex seed, mode "
        "0600); default <keys_dir>/tokens/access-token.key (a folder of its own: "
        "the *.pub files of keys_dir are the event signers' registry). Its public "
        "half is the same path with .pub.",
    )
    token_public_key_file: Path | None = Field(
        default=None,
        description="The public half the audit verifies intake's tokens with; default "
        "the token key file's path with .pub.",
    )
    privacy_key_file: Path | None = Field(
        default=None,
        description="The centre's privacy secret (64 hex digits, mode 0600): keys the "
        "applicants' pseudonyms and wraps their data keys. Intake and the departments need "
        "it, never the router or the audit; default <keys_dir>/privacy/centre.key "
        "(onedoor-admin privacy-key makes it).",
    )
    privacy_key_cache_s: float = Field(
        default=60,
        ge=0,
        description="How long a department keeps an applicant's data key in memory: an "
        "erasure reaches a running department at most this late.",
    )
    access_token_ttl_s: int = Field(default=900, ge=30, description="Access token lifetime.")
    refresh_token_ttl_s: int = Field(
        default=43_200, ge=60, description="Refresh token lifetime (a working day)."
    )
    signin_max_failures: int = Field(
        default=5, ge=1, description="Failed sign-ins per account within signin_window_s."
    )
    signin_max_failures_per_address: int = Field(
        default=20, ge=1, description="Failed sign-ins per client address within the window."
    )
    signin_window_s: int = Field(default=300, ge=1, description="Sign-in rate limit window.")
    api_docs: bool = Field(
        default=False, description="Serve /docs, /redoc and /openapi.json (off by default)."
    )
    citizen_token_ttl_s: int = Field(
        default=600, ge=30, description="A citizen's token (one case, read only) lifetime."
    )
    citizen_code_ttl_s: int = Field(
        default=300, ge=30, description="How long a citizen's one-time code is valid."
    )
    citizen_max_wrong_codes: int = Field(
        default=5,
        ge=1,
        description="Wrong codes per receipt (and, times four, per client address) "
        "within citizen_lock_s before lookups of it are locked.",
    )
    citizen_lock_s: int = Field(
        default=900, ge=1, description="How long a receipt or address stays locked."
    )
    citizen_resend_s: int = Field(
        default=60, ge=1, description="Least time between two codes sent for one receipt."
    )
    citizen_code_answer_s: float = Field(
        default=1.0,
        ge=0,
        description="The least time POST /citizen/code takes to answer, matched or not: "
        "the time spent sending a code does not tell a caller that the receipt matched.",
    )
    notifier: Literal["file", "sms_gateway"] = Field(
        default="file",
        description="How citizens' one-time codes are delivered: 'file' appends JSON lines "
        "to notifier_file (the local stack, the tests), 'sms_gateway' posts them to "
        "sms_gateway_url.",
    )
    notifier_file: Path = Field(
        default=Path(".data/notifier/sms.jsonl"),
        description="The file notifier's output: one JSON line per message.",
    )
    sms_gateway_url: str | None = Field(
        default=None, description="The SMS gateway's endpoint (POST JSON {to, text})."
    )
    sms_gateway_token_file: Path | None = Field(
        default=None, description="A file holding the gateway's bearer token (never logged)."
    )
    sms_gateway_timeout_s: float = Field(
        default=5.0, gt=0, description="How long a citizen's code may take at the SMS gateway."
    )
    oidc_issuer: str | None = Field(
        default=None,
        description="Accept staff tokens of this OpenID Connect issuer (its 'iss'), "
        "beside intake's own; needs oidc_audience and oidc_jwks_url or oidc_jwks_file.",
    )
    oidc_jwks_url: str | None = Field(default=None, description="The issuer's JWKS URL.")
    oidc_jwks_file: Path | None = Field(default=None, description="The issuer's JWKS, a file.")
    oidc_audience: str | None = Field(default=None, description="The 'aud' tokens must name.")
    oidc_roles_claim: str = Field(
        default="roles", description="Claim holding the roles; a dotted path may go deeper."
    )
    oidc_role_map: dict[str, str] = Field(
        default_factory=dict,
        description="The issuer's role names to onedoor's (JSON); unmapped names stand "
        "for themselves, names that are no onedoor role grant nothing.",
    )
    oidc_subject_claim: str = Field(default="sub", description="Claim naming the person.")
    oidc_centre_claim: str = Field(default="centre", description="A clerk's centre.")
    oidc_window_claim: str = Field(default="window", description="A clerk's window.")
    oidc_department_claim: str = Field(default="department", description="An officer's.")
    oidc_leeway_s: float = Field(default=30.0, ge=0, le=300, description="Clock skew allowed.")
    oidc_jwks_min_refresh_s: float = Field(
        default=60.0, ge=0, description="Least time between two reads of the key set."
    )
    oidc_jwks_max_age_s: float = Field(
        default=3600.0, gt=0, description="A key set older than this is read again."
    )
    oidc_jwks_timeout_s: float = Field(
        default=5.0, gt=0, description="How long fetching the issuer's key set may take."
    )

    def api_pages(self) -> ApiPages:
        """FastAPI's ``docs_url``, ``redoc_url`` and ``openapi_url``: the interactive API
        pages only when ``api_docs`` turns them on."""
        on = self.api_docs
        return {
            "docs_url": "/docs" if on else None,
            "redoc_url": "/redoc" if on else None,
            "openapi_url": "/openapi.json" if on else None,
        }

    def registry_path(self) -> Path:
        """The key registry's file."""
        return self.key_registry or self.keys_dir / "registry.json"

    def topic(self, name: str) -> str:
        """The deployed name of a logical topic."""
        return f"{self.topic_prefix}{name}"

    def group(self, name: str) -> str:
        """The deployed consumer group id of a service: prefixed like the topics, so two
        deployments (or two test runs) on one cluster never share a group's members."""
        return f"{self.topic_prefix}{name}"

    def kafka_principal(self, service: str | None = None) -> str | None:
        """The principal this process connects as: ``kafka_username``, else ``service``."""
        return self.kafka_username or service

    def kafka_password_path(self, principal: str) -> Path:
        return self.kafka_password_file or self.kafka_secrets_dir / f"{principal}.password"

    def for_service(self, service: str) -> Settings:
        """These settings for ``service``'s own process: its principal is its name unless
        ``kafka_username`` names one (a deployment whose principals are named otherwise)."""
        if self.kafka_username:
            return self
        return self.model_copy(update={"kafka_username": service})

    def as_principal(
        self,
        principal: str,
        *,
        mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] | None = None,
    ) -> Settings:
        """These settings connecting as another principal (its password from the secrets
        folder): a test or a provisioning step acting as one service."""
        return self.model_copy(
            update={
                "kafka_username": principal,
                "kafka_password_file": None,
                "kafka_sasl_mechanism": mechanism or "SCRAM-SHA-512",
            }
        )

    def token_key_path(self) -> Path:
        return self.token_key_file or self.keys_dir / "tokens" / "access-token.key"

    def privacy_key_path(self) -> Path:
        return self.privacy_key_file or self.keys_dir / "privacy" / "centre.key"

    def token_public_key_path(self) -> Path:
        return self.token_public_key_file or self.token_key_path().with_suffix(".pub")

    def dsn(self) -> str:
        """The DSN every connection of this process uses: DATABASE_URL with the password
        from ``database_password_file`` and the TLS options as the ``sslmode`` and
        ``sslrootcert`` parameters asyncpg (and libpq) read. A secret: never log it.

        Raises:
            SecretFileError: the password file is missing, empty or readable by others.
        """
        password = (
            None
            if self.database_password_file is None
            else read_secret(self.database_password_file, "database password").get_secret_value()
        )
        return compose_dsn(
            self.database_url.get_secret_value(),
            user=self.database_user,
            password=password,
            sslmode=self.database_sslmode,
            ssl_root_cert=self.database_ssl_root_cert,
        )


def compose_dsn(
    url: str,
    *,
    user: str | None = None,
    password: str | None = None,
    sslmode: str | None = None,
    ssl_root_cert: Path | None = None,
) -> str:
    """``url`` with its user, password and TLS parameters replaced by those given."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        userinfo, host = "", parts.netloc
    name, colon, old_password = userinfo.partition(":")
    name = quote(user, safe="") if user is not None else name
    secret = quote(password, safe="") if password is not None else (old_password if colon else None)
    netloc = f"{name}{'' if secret is None else ':' + secret}@{host}" if name or secret else host
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query)
        if not (k == "sslmode" and sslmode) and not (k == "sslrootcert" and ssl_root_cert)
    ]
    query += [("sslmode", sslmode)] if sslmode else []
    query += [("sslrootcert", str(ssl_root_cert))] if ssl_root_cert else []
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
