"""Benchmarks: coursekit's helpers against the plain loops of the source material.

Each script measures one claim in ONE run, interleaving the variants (A B B A ...) on the
same model, data and settings, and reports ratios, because absolute times on a shared
machine mean little. ``make bench`` runs them all and writes ``bench/results.md``:

    python -m bench.fit_vs_plain          # fit epoch vs the source's train_model loop
    python -m bench.profile_loops         # where each loop's epoch time goes (torch.profiler)
    python -m bench.cached_features       # frozen backbone: cached features vs full network
    python -m bench.batched_inference     # predict_folder vs one image at a time
    python -m bench.notebook_times        # every notebook in smoke mode (--make-test: make test)
    python -m bench.run_all --quick       # all of them, tiny sizes, nothing written

They are not part of ``make test``; ``tests/test_bench_guards.py`` keeps loose ratio
checks on tiny sizes there.
"""
