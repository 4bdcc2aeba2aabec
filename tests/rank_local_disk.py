"""Run train.py with every rank in its own working folder (ARGV[1]/rank<RANK>), as if each rank were a node with
its own local disk: a relative --output then names a different folder on each rank. Used by test_distributed.py
under torchrun."""
import os
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(Path(sys.argv[1]) / f"rank{os.environ['RANK']}")
sys.argv = [str(ROOT / "train.py"), *sys.argv[2:]]
runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
