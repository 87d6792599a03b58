"""Reports: a study's records (``results/<study>/index.json`` and its run folders) turned into
tables, figures and pages, our numbers beside the paper's. The report reads records only: nothing
of the study file or its grid.

``records`` (reading a study), ``columns`` (what a table shows), ``paper_rows`` (the paper's row of
a variant), ``cells`` (one value or why none), ``tables`` (the study's table), ``baseline`` (the
difference to the baseline), ``setup`` (training setup, protocol table), ``render`` (markdown,
HTML, LaTeX; the document), ``figures`` and ``curves`` (the plots), ``gallery``, ``provenance``,
``report`` (every file of one study's report), ``index_page`` (reports/index.html).
"""
