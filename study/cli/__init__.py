"""The command line of ``run_study.py``: one module per group of commands (``plan``,
``launching``, ``results``, ``evaluation``, ``tools``), each declaring its commands' options beside
their functions; ``main`` builds the one parser from them and dispatches. The commands parse,
call the stages of ``study/`` and print: what a command decides lives in the stage it belongs to."""
