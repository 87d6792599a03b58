#!/usr/bin/env python
"""The LiteVAE study harness's command line (the commands live in study/cli/).

python run_study.py --help              the commands
python run_study.py demo                the embedded default study (ablations/smoke.yaml), here
python run_study.py COMMAND --help      a command's options
"""

from study.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
