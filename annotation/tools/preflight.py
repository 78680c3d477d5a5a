"""`python -m annotation.tools.preflight`: can untrusted code be isolated on this machine?

Exit 0 with the languages the code runner offers, or 1 with the reason (bubblewrap missing,
user namespaces off). `make test` runs it first, so a machine that cannot isolate code fails
loudly instead of skipping the sandbox tests.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from annotation.tools.code_runner import available_languages
from annotation.tools.sandbox import SandboxBusy, SandboxUnavailable, preflight


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m annotation.tools.preflight",
        description="Check that untrusted code can be isolated here (exit 1 with the reason).",
    )
    parser.parse_args(argv)
    try:
        preflight()
    except (SandboxUnavailable, SandboxBusy, ValueError) as error:
        print(f"sandbox unavailable: {error}", file=sys.stderr)
        return 1
    print(f"sandbox ok; languages: {', '.join(available_languages()) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
