"""Calibration of the whole method on the phantom: error rates of its verdicts, end to end.

The phantom can draw new patients, so a generator whose images are as good as real data (the
``phantom_oracle``) and one whose images carry no rare-class signal (``null_other``) can run
through the pipeline like any generator. Repeating the pipeline with independent phantom and
split seeds (``benchmarks/calibration.py``) gives one JSON line per replicate (``records``);
``stats`` turns those lines into the type-I rate, the power, the interval coverage and the power
curve against the number of rare-class patients, each with a Monte Carlo interval; ``plots``
draws them; ``true_effect`` estimates the oracle's true effect on a large set of new patients.
"""
