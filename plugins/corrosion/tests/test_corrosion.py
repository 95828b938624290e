from defectsynth.testing import check_generator
from defectsynth_corrosion import CorrosionGenerator


def test_conformance() -> None:
    check_generator(CorrosionGenerator)
