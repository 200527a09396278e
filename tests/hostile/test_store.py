"""Bad store URLs and store files: refused in one line naming the URL, before a run folder exists."""

from __future__ import annotations

import pytest

from tests.hostile.conftest import TEST, refused

BAD_URLS = [
    ("notaurl", "not a database URL"),
    ("runs/posttrain.db", "not a database URL"),
    ("mysql://user:secret@localhost/db", "driver"),
    ("postgresql+asyncpg://localhost/db", "driver"),
    ("oracle://localhost/db", "driver"),
    ("nosuchdb://localhost/db", "driver"),
]


@pytest.mark.parametrize(("url", "needle"), BAD_URLS, ids=[u for u, _ in BAD_URLS])
def test_sft_refuses_a_bad_store_url(cli, tmp_path, url, needle):
    line = refused(cli("sft", *TEST, "--name", "x", "--store", url), needle, root=tmp_path)
    assert "secret" not in line  # a password in the URL is never printed
    assert not (tmp_path / "runs" / "x").exists()


@pytest.mark.parametrize(("url", "needle"), BAD_URLS[:3], ids=[u for u, _ in BAD_URLS[:3]])
def test_runs_list_refuses_a_bad_store_url(cli, url, needle):
    refused(cli("runs", "list", "--store", url), needle)


def test_the_store_env_variable_is_checked_too(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("POSTTRAIN_STORE", "notaurl")
    refused(cli("sft", *TEST, "--name", "x"), "notaurl", root=tmp_path)


def test_a_store_file_that_is_not_a_database(cli, tmp_path):
    (tmp_path / "junk.db").write_text("this is not sqlite " * 100)
    refused(
        cli("sft", *TEST, "--name", "x", "--store", f"sqlite:///{tmp_path}/junk.db"), "junk.db", root=tmp_path
    )


def test_a_store_path_that_is_a_folder(cli, tmp_path):
    (tmp_path / "db").mkdir()
    refused(cli("sft", *TEST, "--name", "x", "--store", f"sqlite:///{tmp_path}/db"), "db", root=tmp_path)


def test_a_store_folder_under_a_file(cli, tmp_path):
    (tmp_path / "file").write_text("x")
    refused(
        cli("sft", *TEST, "--name", "x", "--store", f"sqlite:///{tmp_path}/file/s.db"), "file", root=tmp_path
    )


def test_runs_show_of_an_unknown_run(cli, tmp_path):
    refused(cli("runs", "show", "999", "--store", f"sqlite:///{tmp_path}/s.db"), "999")


def test_runs_show_of_an_unknown_name(cli, tmp_path):
    refused(cli("runs", "show", "nobody", "--store", f"sqlite:///{tmp_path}/s.db"), "nobody")
