try:  # a ^C while the command line's modules load: one line, status 130, as after
    from trafficgen.cli.main import main
except KeyboardInterrupt:
    import sys
    print("error: interrupted; no output was written", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
