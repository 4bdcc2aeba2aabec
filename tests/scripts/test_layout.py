"""The layout holds: the package never imports a script, scripts import the package (and the card's dataset.py),
and every command the README, docs/ and the seed's note show names a script that exists and options it has."""
import ast
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEED_NOTE = ROOT.parent / "shared" / "seed.md"
SCRIPTS = sorted(path.stem for path in ROOT.glob("*.py"))
SHARED_DATA_MODULE = "dataset"  # the design card's data module, which the scripts share


def imported_top_level_names(path):
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_root_holds_the_scripts_and_the_card_s_files():
    assert set(SCRIPTS) == {"train", "dataset", "analyze_data", "visualize_training", "predict", "evaluate", "export",
                            "app", "audit_labels"}
    for name in ("train_fixed.sh", "train_baseline.sh", "recipes", "data", "checkpoints", "demo_plots",
                 "requirements.txt", "tests", "pyproject.toml", "docs", "leafdisease"):
        assert (ROOT / name).exists(), name


@pytest.mark.parametrize("module", sorted((ROOT / "leafdisease").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_package_never_imports_a_script(module):
    assert not imported_top_level_names(module) & set(SCRIPTS)


def test_scripts_import_the_package_not_each_other():
    for script in SCRIPTS:
        imported = imported_top_level_names(ROOT / f"{script}.py") & set(SCRIPTS)
        assert imported <= {SHARED_DATA_MODULE} - {script}, f"{script}.py imports {sorted(imported)}"


def documented_commands(path):
    """Each command line in the file's ```bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def documents():
    found = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return found + ([SEED_NOTE] if SEED_NOTE.is_file() else [])


def option_is_defined(script, option):
    """Whether `option` is one of the script's argparse options (its own source, the shared cli helpers, or for a
    benchmark the benchmarks' shared option helpers)."""
    sources = [ROOT / script, ROOT / "leafdisease" / "utils" / "cli.py"]
    if script.startswith("benchmarks/"):
        sources += sorted((ROOT / "benchmarks").glob("*.py"))
    return any(f'"{option}"' in source.read_text() for source in sources if source.is_file())


@pytest.mark.parametrize("document", documents(), ids=lambda path: path.name)
def test_documented_commands_name_existing_scripts_and_options(document):
    checked = 0
    for command in documented_commands(document):
        try:
            words = shlex.split(command)
        except ValueError:
            continue
        for index, word in enumerate(words):
            if word in ("python", ".venv/bin/python", "bash") and index + 1 < len(words):
                target = words[index + 1]
                if target.startswith("-") or "/shared/" in target:
                    continue
                assert (ROOT / target).is_file(), f"{document.name}: `{command}` names {target}, which does not exist"
                if target.endswith(".py"):
                    for option in (word for word in words[index + 2:] if re.fullmatch(r"--[a-z][a-z0-9-]*", word)):
                        assert option_is_defined(target, option), f"{document.name}: `{command}`: {target} has no {option}"
                checked += 1
    assert checked or not documented_commands(document), f"{document.name}: no script command found to check"


def test_the_seed_s_checklist_greps_its_augmentation_in_dataset_py():
    assert "rotate_limit=45" in (ROOT / "dataset.py").read_text()
