"""Training recipes declared once: recipes/*.yaml hold train.py settings, read by `train.py --config FILE`.

A recipe is a YAML mapping of train.py options (names as on the command line, with - or _): command-line
flags override it. A profile (recipes/demo.yaml) holds, per recipe name, what changes on other hardware or data:
`--config recipes/fixed_stage1.yaml --profile recipes/demo.yaml`. A finished run's config.yaml (its resolved
settings under 'args') is a recipe too, so `--config <run>/config.yaml` re-runs it exactly.
Modelled on timm's train.py --config and nanoGPT's config/*.py.
"""
from pathlib import Path

import yaml

from leafdisease.utils.errors import UserError

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"
# The seed's recipe for each train.py --stage: without --config, a stage's LR and warmup are its recipe's.
STAGE_RECIPES = {"head": "fixed_stage1", "full": "fixed_stage2"}
# Without --config (or a value in it), train.py's stage, epochs, resolution and augmentation are those of the seed's
# main stage; analyze_data.py sizes its advice for that resolution.
DEFAULT = STAGE_RECIPES["full"]
# Settings a finished run's config.yaml records that say where it ran, not how it trains.
NOT_REPLAYED = ("config", "profile")


def path_of(name):
    """recipes/<name>.yaml, for the scripts that name a recipe."""
    return RECIPES_DIR / f"{name}.yaml"


def read_yaml(path):
    path = Path(path)
    try:
        content = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: recipe not found (recipes: {', '.join(sorted(available()))})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a YAML recipe: not text (a binary file?)") from None
    except (OSError, yaml.YAMLError) as error:
        raise UserError(f"{path}: not a readable YAML recipe ({str(error).splitlines()[0]})") from None
    if not isinstance(content, dict):
        raise UserError(f"{path}: a recipe is a mapping of train.py options, not a {type(content).__name__}")
    return content


def available():
    return [path.stem for path in RECIPES_DIR.glob("*.yaml")]


def settings(config_path, profile_path=None):
    """The recipe's settings ({option name: value}, names with '_'), a profile's section for it applied on top.
    A run's config.yaml gives its recorded 'args'."""
    content = read_yaml(config_path)
    if "args" in content and isinstance(content["args"], dict):
        content = {key: value for key, value in content["args"].items() if key not in NOT_REPLAYED}
    values = {str(key).replace("-", "_"): value for key, value in content.items()}
    if profile_path:
        profile = read_yaml(profile_path)
        name = Path(config_path).stem
        if name not in profile:
            raise UserError(f"{profile_path}: no section for recipe '{name}' (it has {', '.join(map(str, profile))})")
        values.update({str(key).replace("-", "_"): value for key, value in (profile[name] or {}).items()})
    return values


def apply_to_parser(parser, config_path, profile_path=None):
    """Make the recipe the parser's defaults, checked and converted like command-line values, so flags given on
    the command line still win. An option the parser does not know is a one-line error naming the file."""
    actions = {action.dest: action for action in parser._actions}
    defaults = {}
    for key, value in settings(config_path, profile_path).items():
        action = actions.get(key)
        if action is None or not action.option_strings:
            raise UserError(f"{config_path}: '{key}' is not a train.py option")
        if isinstance(value, str) and action.type is not None:
            try:
                value = action.type(value)
            except (TypeError, ValueError):
                raise UserError(f"{config_path}: {key}: '{value}' is not a valid value") from None
        if action.choices is not None and value is not None and value not in action.choices:
            raise UserError(f"{config_path}: {key}: '{value}' is not one of {', '.join(map(str, action.choices))}")
        defaults[key] = value
    parser.set_defaults(**defaults)
    return defaults
