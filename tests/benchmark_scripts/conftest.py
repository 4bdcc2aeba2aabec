"""What the benchmark scripts' tests share: realdata.py's profiles cut to a tiny size."""
import pytest

from benchmarks import realdata


@pytest.fixture()
def tiny_profile(monkeypatch):
    """Both profiles at 32 px and a few epochs (enough for the crt row's three stages), for this test only."""
    for name, epochs in (("screen", 4), ("final", 3)):
        monkeypatch.setitem(realdata.PROFILES, name, realdata.Profile(
            img_size=32, baseline_img_size=32, epochs=epochs, head_epochs=1, warmup_epochs=0, crt_epochs=1))
