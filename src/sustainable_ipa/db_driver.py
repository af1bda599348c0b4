"""A database URL whose Python driver is missing, said in one line naming the package (SQLAlchemy's own message is
"Can't load plugin" or a bare ModuleNotFoundError)."""

from __future__ import annotations

import re

from sustainable_ipa.errors import UserError

# The package that provides each driver module SQLAlchemy imports, where the two names differ.
PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient",
            "pymysql": "PyMySQL", "asyncpg": "asyncpg"}


SERVERS = ("postgresql", "mysql", "mariadb", "mssql", "oracle")  # databases reached through a driver package


def check_db_driver(url: str, setting: str) -> None:
    """Raise one line when `url` names a database server whose driver cannot be imported here. Other URLs (sqlite,
    which needs no driver; file stores; anything else) are left to the caller's own checks."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
        if parsed.get_backend_name() not in SERVERS:
            return
        parsed.get_dialect().import_dbapi()
    except ArgumentError:  # not a database URL, or a driver SQLAlchemy does not know: the caller's error names it
        return
    except ImportError as err:
        module = err.name or "its driver"
        raise UserError(f"{setting} {without_password(url)} needs the Python module '{module}', which is not installed",
                        f"pip install '{PACKAGES.get(module, module)}' (or name an installed driver in the URL, "
                        f"e.g. {parsed.get_backend_name()}+<driver>://)") from None


def without_password(url: str) -> str:
    """`url` as it may be printed: a database URL's password masked."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True) if "://" in url and "@" in url else url
    except (ArgumentError, ValueError):  # a scheme SQLAlchemy does not parse (mlflow-artifacts://, a bad port)
        return mask_passwords(url)


# scheme://user:password@ anywhere in a text: SQLAlchemy parses one whole URL, not URLs among other words. Hydra
# writes an override's colons escaped (scheme\://user\:password@) in its saved overrides and log lines.
_CREDENTIALS = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*\\?://[^\s:/@'\"\\]*\\?:)[^\s@'\"]+@")
MASK = "***"  # what SQLAlchemy's hide_password writes


def mask_passwords(text: str) -> str:
    """`text` (a line, a param, a saved config) with the password of every URL in it masked: `user:***@`."""
    return _CREDENTIALS.sub(rf"\g<1>{MASK}@", text)


CONNECT_TIMEOUT_S = 5  # one attempt; MLflow retries a refused database ten times over about 100 s, warning each time


def check_db_connects(url: str, setting: str) -> None:
    """One connection to a database server named by `url`: wrong user or password, a database that does not exist
    or a server that does not answer is one line naming the fix. SQLite and other URLs are left to the caller."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError
    from sqlalchemy.pool import NullPool

    try:
        parsed = make_url(url)
    except ArgumentError:
        return
    backend = parsed.get_backend_name()
    if backend not in SERVERS:
        return
    args = {"connect_timeout": CONNECT_TIMEOUT_S} if backend in ("postgresql", "mysql", "mariadb") else {}
    engine = create_engine(url, poolclass=NullPool, connect_args=args)
    try:
        with engine.connect():
            pass
    except DBAPIError as err:
        text = str(err.orig or err).strip()
        # libpq: "connection failed: connection to server at "H", port P failed: FATAL:  <why>": keep the why
        reason = (text.splitlines() or [type(err).__name__])[0].rsplit(" failed: ", 1)[-1].strip()[:200]
        lowered = text.lower()
        if "password" in lowered or "authentication" in lowered or "access denied" in lowered:
            fix = f"put the right user and password in {setting} ({backend}+<driver>://USER:PASSWORD@HOST:PORT/DB)"
        elif "does not exist" in lowered or "unknown database" in lowered:
            fix = f"create the database first (PostgreSQL: createdb -h HOST -p PORT -U USER {parsed.database})"
        else:
            fix = f"start the database server, or correct the host and port in {setting}"
        raise UserError(f"cannot connect to {setting} {without_password(url)} ({reason})", fix) from None
    finally:
        engine.dispose()
