from trafficgen.cli.main import main

raise SystemExit(main())
