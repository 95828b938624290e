"""The dataset report page (``defectsynth report``) and pictures people can read
(``defectsynth preview``).

:mod:`.stats` computes the numbers from ``manifest.jsonl`` (numpy only); :mod:`.page`
draws them with matplotlib (the ``report`` extra) into one self-contained HTML file;
:mod:`.preview` draws zoomed before/after crops with OpenCV.
"""
