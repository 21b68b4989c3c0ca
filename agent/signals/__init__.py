"""Signal code shared by the agent and ``model_build``: numpy only, no I/O, no asyncio, no clock.

    rr        RR-interval cleaning (range limits, Lipponen & Tarvainen 2019 beat classification, in-place
              correction), windows of N beats with their quality, and the classic AF-detector features
    glucose   CGM readings onto a 5-minute grid with explicit gap rules; past-window / target cutting
    quality   quality gates as data: ``Gate(ok, reasons)``
    windows   the per-wearer rolling buffer the agent feeds one reading at a time; it cuts its windows with
              the batch functions of ``rr`` and ``glucose``, so the agent and ``model_build`` cut identical
              windows from the same readings (a test feeds readings one by one and compares bit for bit)
    digest    the window hash alerts carry
    errors    ``SignalError``, raised for invalid parameters and inputs

Every function works on float64 arrays and is pure: the same inputs give the same bytes out, on the device and
on the build host. Times are seconds (any epoch, float64); RR intervals are seconds; glucose is mg/dL.
"""
