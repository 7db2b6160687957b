from spikeport.cli import main

raise SystemExit(main())
