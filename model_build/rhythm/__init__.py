"""The AF detector from RR intervals (issue 7): data, labels, baselines, model, alert policy, evaluation.

    data       loaders for the three ``rr/`` layouts (any set in them), by record, with file identities
    split      TRAIN and TEST as ``../shared/data/README.md`` fixes them
    windows    windows cut and gated by the agent's own code, and how they are labelled (AF, AFL, J)
    baseline   COSEn and nRMSSD + Shannon entropy with thresholds fitted on TRAIN
    model      the 1D CNN and its seeded training (TensorFlow inside functions only)
    replay     alerts from scores or from the agent's detector, through the agent's alert engine
    metrics    window and episode figures
    config     the chosen settings, and why;  select: the measured alternatives behind them
    build      ``vigil build rhythm``;  evaluate: ``vigil models evaluate rhythm``;  cli: both commands
    export     the float twin as a float ``.tflite``;  fixture: the committed test excerpts

The device side is ``agent/rhythm.py``.
"""
