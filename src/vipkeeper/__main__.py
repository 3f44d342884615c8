from vipkeeper.cli import main

raise SystemExit(main())
