"""A database URL whose Python driver is missing, said in one line naming the package (SQLAlchemy's own message is
"Can't load plugin" or a bare ModuleNotFoundError)."""

from __future__ import annotations

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
        raise UserError(f"{setting} {url} needs the Python module '{module}', which is not installed",
                        f"pip install '{PACKAGES.get(module, module)}' (or name an installed driver in the URL, "
                        f"e.g. {parsed.get_backend_name()}+<driver>://)") from None
