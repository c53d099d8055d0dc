"""python -m churn_app: score one record given as JSON on the command line."""

from __future__ import annotations

import json
import sys

from churn_app import model, predict


def main() -> int:
    record = json.loads(sys.argv[1]) if len(sys.argv) > 1 else None
    if record is None:
        print(f"usage: python -m churn_app '{{...}}'  (fields: {list(model().signature.names)})")
        return 2
    print(json.dumps(predict(record)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
