"""The ``modelkit`` group through click's ``CliRunner``: what click gives the command (near
misses, ranges, usage lines, help) and the failures every command reports the same way."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from modelkit.cli import cli, main
from modelkit.cli._app import ByteSize

COMMANDS = [
    "inspect",
    "verify",
    "lock",
    "schema",
    "report",
    "predict",
    "convert",
    "import",
    "pack",
    "bench",
    "serve",
]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


# -- usage errors: exit 2, the usage line, then one error line ------------------------------------


def test_an_unknown_command_gets_the_near_miss_click_finds() -> None:
    result = invoke("inspekt", "bundles/churn")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "usage: modelkit [OPTIONS] COMMAND [ARGS]...",
        "Try 'modelkit -h' for help.",
        "modelkit: error: unknown command 'inspekt'. Did you mean 'inspect'?",
    ]


def test_an_unknown_command_without_a_near_miss_lists_the_commands() -> None:
    result = invoke("frobnicate")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        f"modelkit: error: unknown command 'frobnicate' (commands: {', '.join(COMMANDS)})"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["predict", "b", "-i", "a.csv", "-o", "b.csv", "--chunk-size", "0"],
            "Invalid value for '--chunk-size': 0 is not in the range x>=1.",
        ),
        (["serve", "b", "--port", "70000"], "70000 is not in the range 0<=x<=65535."),
        (["bench", "b", "--records", "-5"], "Invalid value for '--records'"),
        (["serve", "b", "--threads", "many"], "'many' is not a valid integer range."),
    ],
)
def test_a_number_out_of_range_is_a_usage_error(argv: list[str], message: str) -> None:
    result = invoke(*argv)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"usage: modelkit {argv[0]} ")
    assert f"modelkit {argv[0]}: error: " in result.stderr
    assert message in result.stderr


def test_a_missing_argument_is_a_usage_error() -> None:
    result = invoke("inspect")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "usage: modelkit inspect PATH [OPTIONS]",
        "Try 'modelkit inspect -h' for help.",
        "modelkit inspect: error: Missing argument 'PATH'.",
    ]


def test_a_missing_required_option_is_named() -> None:
    result = invoke("predict", "bundles/churn", "--output", "out.csv")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        "modelkit predict: error: Missing option '--input' / '-i'."
    )


def test_an_unknown_option_gets_its_near_miss() -> None:
    result = invoke("inspect", "bundles/churn", "--jsn")
    assert result.exit_code == 2
    assert "No such option '--jsn'. Did you mean '--json'?" in result.stderr


def test_a_choice_names_the_choices() -> None:
    result = invoke("predict", "b", "-i", "a", "-o", "b", "--input-format", "xlsx")
    assert result.exit_code == 2
    assert "'xlsx' is not one of 'jsonl', 'csv', 'parquet'." in result.stderr


def test_the_url_prefix_must_be_a_path() -> None:
    result = invoke("serve", "bundles/churn", "--url-prefix", "models")
    assert result.exit_code == 2
    assert "Invalid value for '--url-prefix': must start with '/', got 'models'" in result.stderr


def test_modelkit_alone_shows_the_help_on_stderr_and_exits_2() -> None:
    result = invoke()
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("usage: modelkit [OPTIONS] COMMAND [ARGS]...")
    assert "Commands:" in result.stderr


def test_options_without_a_command_name_the_commands() -> None:
    result = invoke("--debug")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "usage: modelkit [OPTIONS] COMMAND [ARGS]..."
    assert result.stderr.splitlines()[-1] == (
        f"modelkit: error: missing command: one of {', '.join(COMMANDS)}"
    )


# -- help ---------------------------------------------------------------------------------------


def test_help_lists_the_commands_in_the_order_of_the_work() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    listed = result.stdout.partition("Commands:")[2].split("\n\n")[0]
    names = [line.split()[0] for line in listed.splitlines() if line[:3].strip()]
    assert names == COMMANDS
    assert "Exit status: 0 success, 1 failure (one line on stderr), 2 usage error." in result.stdout


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_dash_h_is_help_too(flag: str) -> None:
    result = invoke("verify", flag)
    assert result.exit_code == 0
    assert result.stdout.startswith("usage: modelkit verify [PATH]... [OPTIONS]\n")


def test_the_usage_line_names_the_required_options() -> None:
    result = invoke("predict", "--help")
    assert result.stdout.startswith(
        "usage: modelkit predict PATH --input FILE --output FILE [OPTIONS]"
    )


def test_a_command_summary_is_not_cut_short() -> None:
    # click shortens a summary it derives to 45 characters; ours are given whole.
    result = invoke("--help")
    assert "Registry.from_config(lock=) reads." in result.stdout


def test_debug_is_a_hidden_option_of_every_command() -> None:
    assert "--debug" in invoke("--help").stdout
    assert "--debug" not in invoke("inspect", "--help").stdout


# -- failures: exit 1 (or 130), one line --------------------------------------------------------


def test_a_failure_is_one_line_under_the_runner_as_under_main(tmp_path: Path) -> None:
    result = invoke("inspect", str(tmp_path / "nowhere"))
    assert result.exit_code == 1
    assert result.stderr == (
        f"modelkit: error: No bundle at '{tmp_path / 'nowhere'}': the path does not exist.\n"
    )


def test_debug_after_the_command_shows_the_traceback(tmp_path: Path) -> None:
    result = invoke("inspect", str(tmp_path / "nowhere"), "--debug")
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr


def test_an_interrupted_command_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelkit.cli import _inspect

    def interrupted(path: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_inspect, "describe_bundle", interrupted)
    result = invoke("inspect", "bundles/churn")
    assert result.exit_code == 130
    assert result.stderr.splitlines()[-1] == "modelkit: interrupted"


def test_main_returns_the_status_and_never_exits(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verfy"]) == 2
    assert main(["--help"]) == 0
    assert "unknown command 'verfy'" in capsys.readouterr().err


# -- sizes in bytes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [("1048576", 2**20), ("512KiB", 2**19), ("10MiB", 10 * 2**20), ("1gib", 2**30), ("7 B", 7)],
)
def test_a_size_takes_binary_units(text: str, size: int) -> None:
    assert ByteSize().convert(text, None, None) == size


@pytest.mark.parametrize("text", ["0", "ten", "10MB", "-5", "1.5MiB", ""])
def test_a_size_that_is_not_a_positive_number_of_bytes_is_refused(text: str) -> None:
    with pytest.raises(click.BadParameter, match="expected a positive size in bytes"):
        ByteSize().convert(text, None, None)
