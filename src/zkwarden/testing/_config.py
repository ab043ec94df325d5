"""What a test ZooKeeper server runs: the Java and ZooKeeper jars found, its ``zoo.cfg``
entries and the JVM command line.

Pure functions of the server's options (nothing is started or written here), so
:mod:`zkwarden.testing.server` keeps only the process lifecycle and its queries.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
from collections.abc import Mapping

from zkwarden.errors import ConfigurationError

from ._errors import JavaNotFoundError, ZooKeeperNotFoundError
from ._process import LOOPBACK

__all__ = (
    "DEBIAN_ZOOKEEPER_JAR",
    "find_java",
    "find_zookeeper_classpath",
    "jaas_config",
    "jvm_command",
    "zoo_cfg",
)

_DEBIAN_JAVA_DIR = "/usr/share/java"
DEBIAN_ZOOKEEPER_JAR = "/usr/share/java/zookeeper.jar"
# Debian's zookeeper.jar pulls its dependencies in through its manifest Class-Path, but
# slf4j-api finds no logging backend there and would print nothing; slf4j-simple writes to
# stderr, which goes to the server's log file.
_DEBIAN_LOG_BACKEND = "/usr/share/java/slf4j-simple.jar"
_MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
_INSTALL_HINT = (
    "install it with `apt-get install zookeeper default-jre-headless` (Debian/Ubuntu), "
    "or set ZOOKEEPER_HOME to an Apache ZooKeeper binary distribution (with lib/*.jar)"
)


# --- locating Java and ZooKeeper ---------------------------------------------------------


def find_java() -> str:
    """Return the path of the ``java`` executable to run ZooKeeper with.

    ``$JAVA_HOME/bin/java`` wins when it exists, otherwise ``java`` on ``PATH``.

    Raises:
        JavaNotFoundError: no Java runtime was found.
    """
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = os.path.join(java_home, "bin", "java")
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("java")
    if found is None:
        raise JavaNotFoundError(
            "no `java` found (JAVA_HOME unset or invalid, none on PATH): "
            "install one with `apt-get install default-jre-headless`"
        )
    return found


def find_zookeeper_classpath(*, netty: bool = False) -> str:
    """Return the Java class path that runs a ZooKeeper server.

    ``netty`` adds the Netty jars Debian's package leaves out of the server's manifest
    (codec, resolver), which its TLS connection factory needs.

    ``$ZOOKEEPER_HOME`` wins when set (its ``conf`` directory, ``lib/*.jar`` and top-level
    jars); otherwise the jars of Debian's ``zookeeper`` package are used.

    Raises:
        ZooKeeperNotFoundError: ``$ZOOKEEPER_HOME`` holds no jar, or it is unset and the
            Debian package is not installed.
    """
    home = os.environ.get("ZOOKEEPER_HOME")
    if home:
        jars = sorted(glob.glob(os.path.join(home, "lib", "*.jar")))
        jars += sorted(glob.glob(os.path.join(home, "*.jar")))
        if not jars:
            raise ZooKeeperNotFoundError(
                f"ZOOKEEPER_HOME={home!r} contains no lib/*.jar; point it at an Apache "
                f"ZooKeeper binary distribution, or unset it and {_INSTALL_HINT}"
            )
        conf = os.path.join(home, "conf")
        # The conf directory carries the distribution's logback/log4j configuration.
        entries = ([conf] if os.path.isdir(conf) else []) + jars
        return os.pathsep.join(entries)
    if os.path.isfile(DEBIAN_ZOOKEEPER_JAR):
        entries = [DEBIAN_ZOOKEEPER_JAR]
        if os.path.isfile(_DEBIAN_LOG_BACKEND):
            entries.append(_DEBIAN_LOG_BACKEND)
        if netty:
            entries += [jar for jar in (os.path.join(_DEBIAN_JAVA_DIR, f"netty-{name}.jar")
                                        for name in ("codec", "resolver"))
                        if os.path.isfile(jar)]
        return os.pathsep.join(entries)
    raise ZooKeeperNotFoundError(f"ZooKeeper was not found: {_INSTALL_HINT}")


# --- zoo.cfg and the command line --------------------------------------------------------


def zoo_cfg(
    *,
    data_dir: str,
    port: int,
    tick_time: float,
    four_letter_words: str,
    extended_types: bool,
    min_session_timeout: float | None,
    max_session_timeout: float | None,
    secure_port: int | None,
    tls_keystore: str | None,
    tls_keystore_password: str,
    read_only_mode: bool,
    extra_config: Mapping[str, str],
    sasl: bool = False,
    client_auth: str = "none",
    tls_truststore: str | None = None,
    tls_truststore_password: str = "",
) -> dict[str, str]:
    """The ``zoo.cfg`` entries of a server with these options (see ``ZooKeeperServer``).

    ``secure_port`` is the TLS client port, used (and required) with ``tls_keystore``.
    ``sasl`` registers the SASL auth provider (so ``sasl:`` ACLs work); ``client_auth``
    (none, want, need) asks TLS clients for a certificate signed by ``tls_truststore``.
    ``extra_config`` comes last and overrides everything.  Raises nothing.
    """
    ms = round(tick_time * 1000)
    words = four_letter_words
    if words.strip() != "*":
        # The harness itself needs these two to know when the server is up.
        names = {w.strip() for w in words.split(",") if w.strip()} | {"ruok", "srvr"}
        words = ",".join(sorted(names))
    config = {
        "tickTime": str(max(ms, 1)),
        "dataDir": data_dir,
        "clientPort": str(port),
        "clientPortAddress": LOOPBACK,
        "maxClientCnxns": "0",
        "4lw.commands.whitelist": words,
        "admin.enableServer": "false",
        "extendedTypesEnabled": "true" if extended_types else "false",
    }
    if min_session_timeout is not None:
        config["minSessionTimeout"] = str(round(min_session_timeout * 1000))
    if max_session_timeout is not None:
        config["maxSessionTimeout"] = str(round(max_session_timeout * 1000))
    if tls_keystore is not None:
        keystore_type = "PEM" if tls_keystore.endswith(".pem") else "PKCS12"
        config.update({
            "secureClientPort": str(secure_port),
            "secureClientPortAddress": LOOPBACK,
            # Only the Netty factory speaks TLS; it serves the plain port as well.
            "serverCnxnFactory": "org.apache.zookeeper.server.NettyServerCnxnFactory",
            "ssl.keyStore.location": tls_keystore,
            "ssl.keyStore.password": tls_keystore_password,
            "ssl.keyStore.type": keystore_type,
            "ssl.clientAuth": client_auth,
        })
        if tls_truststore is not None:
            config.update({
                "ssl.trustStore.location": tls_truststore,
                "ssl.trustStore.password": tls_truststore_password,
                "ssl.trustStore.type": "PEM" if tls_truststore.endswith(".pem") else "PKCS12",
            })
    if sasl:
        config["authProvider.1"] = "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"
    if read_only_mode:
        # A read-only (partitioned) 3.8 server answers a new global session with
        # NOTREADONLY and drops resumed ones: only local sessions work there.  They are
        # upgraded to global ones when they create an ephemeral node.
        config["localSessionsEnabled"] = "true"
        config["localSessionsUpgradingEnabled"] = "true"
    config.update(extra_config)
    return config


def _jaas_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def jaas_config(
    *,
    sasl_users: Mapping[str, str] | None = None,
    keytab: str | None = None,
    principal: str | None = None,
) -> str:
    """The JAAS file of a SASL server: a ``Server`` section with ZooKeeper's
    ``DigestLoginModule`` (one ``user_<name>`` per entry of ``sasl_users``) or, with
    ``keytab`` and ``principal``, Java's ``Krb5LoginModule`` (GSSAPI).  The server picks
    GSSAPI when the section yields a Kerberos principal, so the two are exclusive.

    Raises:
        ConfigurationError: both or neither given, or a user name JAAS cannot carry.
    """
    if (sasl_users is None) == (keytab is None):
        raise ConfigurationError("give either sasl_users or a Kerberos keytab, not both")
    if keytab is not None:
        return (
            "Server {\n"
            "  com.sun.security.auth.module.Krb5LoginModule required\n"
            "  useKeyTab=true\n  storeKey=true\n  useTicketCache=false\n  isInitiator=false\n"
            f"  keyTab={_jaas_quote(keytab)}\n"
            f"  principal={_jaas_quote(principal or '')};\n"
            "};\n"
        )
    assert sasl_users is not None
    lines = ["Server {", "  org.apache.zookeeper.server.auth.DigestLoginModule required"]
    for user, password in sasl_users.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", user):
            raise ConfigurationError(f"SASL test user names are [A-Za-z0-9_.-]+, got {user!r}")
        lines.append(f"  user_{user}={_jaas_quote(password)}")
    lines[-1] += ";"
    lines.append("};")
    return "\n".join(lines) + "\n"


def jvm_command(
    config_path: str,
    *,
    jvm_heap: str,
    force_sync: bool,
    read_only_mode: bool,
    netty: bool,
    system_properties: Mapping[str, str] | None = None,
) -> list[str]:
    """The command line that runs ``QuorumPeerMain`` on ``config_path``; ``system_properties``
    become ``-Dkey=value`` (the JAAS file and ``krb5.conf`` of a SASL server).

    Raises:
        JavaNotFoundError: no Java runtime was found.
        ZooKeeperNotFoundError: no ZooKeeper jars were found.
    """
    return [
        find_java(),
        "-Xshare:auto",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-XX:-UsePerfData",
        f"-Xms{min(jvm_heap, '32m', key=_heap_bytes)}",
        f"-Xmx{jvm_heap}",
        "-Djava.awt.headless=true",
        # These are read as system properties, under exactly these names.
        f"-Dzookeeper.forceSync={'yes' if force_sync else 'no'}",
        f"-Dreadonlymode.enabled={'true' if read_only_mode else 'false'}",
        "-Dorg.slf4j.simpleLogger.showDateTime=true",
        "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
        *(f"-D{key}={value}" for key, value in (system_properties or {}).items()),
        "-cp",
        find_zookeeper_classpath(netty=netty),
        _MAIN_CLASS,
        config_path,
    ]


def _heap_bytes(size: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    suffix = size[-1:].lower()
    return int(size[:-1]) * units[suffix] if suffix in units else int(size)
