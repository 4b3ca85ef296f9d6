"""The dashboard's server process: `python app/serve.py run app/main.py [streamlit options] -- --runs DIR`
(what `cskd dashboard` starts).

It imports the heavy libraries the pages use (matplotlib and seaborn through analysis.displays,
pandas, PIL, cskd's run-folder readers; torch and FAISS are left to the background jobs, which run
in processes of their own) before Streamlit starts listening, then runs Streamlit's own command
line in this process. Streamlit runs every page in this process too, so the first visitor does
not wait ~2 s for those imports. The app's own modules (which hold Streamlit caches) are imported
by the first page run, as usual.
"""

from __future__ import annotations

import sys


def preload() -> None:
    """Import what every page needs before the first session (cskd.app is an installed package:
    nothing is added to sys.path)."""
    import pandas  # noqa: F401
    import PIL.Image  # noqa: F401

    import cskd.analysis.displays  # noqa: F401 -- matplotlib, seaborn, scipy
    import cskd.analysis.tables  # noqa: F401
    import cskd.evaluation.stats_cache  # noqa: F401
    import cskd.runfolder  # noqa: F401


def main() -> int:
    preload()
    from streamlit.web.cli import main as streamlit_main

    sys.argv = ["streamlit", *sys.argv[1:]]
    return streamlit_main()


if __name__ == "__main__":
    sys.exit(main())
