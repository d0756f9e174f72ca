"""`ehr-server` subcommands as an operator runs them: migrate, import, seed-demo (processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

from sync_server.db.engine import alembic_config

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str, database_url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "sync_server.cli", *args, "--data-dir", str(data_dir)],
        env=env, capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip


def _scalar(url: str, sql: str) -> object:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    finally:
        engine.dispose()


def test_migrate_import_and_seed(
    create_database: Callable[[], str], shared_data: Path, tmp_path: Path
) -> None:
    url = create_database()
    refused = _cli("seed-demo", "--patients", "2", database_url=url, data_dir=tmp_path)
    assert refused.returncode != 0 and "ehr-server migrate" in refused.stderr + refused.stdout

    migrated = _cli("migrate", database_url=url, data_dir=tmp_path)
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    assert _scalar(url, "SELECT string_agg(version_num, ',') FROM alembic_version") in {
        ",".join(sorted(heads)),
        ",".join(heads),
    }

    ndjson = shared_data / "fhir-synthea" / "bulk-ndjson-10-patients"
    bad = tmp_path / "bad.ndjson"
    good_line = (ndjson / "Patient.000.ndjson").read_text().splitlines()[0]
    bad.write_text(good_line.rstrip().removesuffix("}") + ',"birthDate":"never"}\n{oops\n')
    imported = _cli(
        "import", str(ndjson / "Patient.000.ndjson"), str(ndjson / "AllergyIntolerance.000.ndjson"),
        str(bad), "--workers", "1", database_url=url, data_dir=tmp_path,
    )  # fmt: skip
    assert imported.returncode == 1  # two refused lines, reported
    assert "Imported 24 resources from 3 files" in imported.stdout
    assert "bad.ndjson #1" in imported.stderr and "bad.ndjson #2" in imported.stderr
    assert "never" not in imported.stderr  # the refused value is not echoed
    assert _scalar(url, "SELECT count(*) FROM resources") == 24

    again = _cli(
        "import", str(ndjson / "Patient.000.ndjson"), "--workers", "2",
        database_url=url, data_dir=tmp_path,
    )  # fmt: skip
    assert again.returncode == 0
    assert (
        _scalar(url, "SELECT max(version_id) FROM resources WHERE resource_type = 'Patient'") == 2
    )

    seeded = _cli(
        "seed-demo", "--patients", "3", "--seed", "5", database_url=url, data_dir=tmp_path
    )
    assert seeded.returncode == 0, seeded.stderr[-2000:]
    assert "3 patients" in seeded.stdout
    assert _scalar(url, "SELECT count(*) FROM resources WHERE resource_type = 'Location'") == 3
    assert _scalar(url, "SELECT count(DISTINCT patient_id) FROM patient_locations") == 3
