from defectsynth_corrosion import CorrosionGenerator

from defectsynth.testing import check_generator


def test_conformance() -> None:
    check_generator(CorrosionGenerator)
