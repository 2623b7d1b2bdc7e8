"""`python -m tests.fakes.stripe_fake --port 12111 --webhook-url URL --webhook-secret whsec_…`"""
import argparse
import signal
import threading

from . import StripeFake


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.stripe_fake",
                                     description="A Stripe-compatible API for tests and test mode.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111, help="0 picks a free port")
    parser.add_argument("--webhook-url", default=None, help="POST every event here")
    parser.add_argument("--webhook-secret", default="whsec_test_fake")
    parser.add_argument("--verbose", action="store_true", help="log each request")
    args = parser.parse_args(argv)
    fake = StripeFake(webhook_url=args.webhook_url, webhook_secret=args.webhook_secret,
                      verbose=args.verbose)
    url = fake.start(port=args.port, host=args.host)
    print(f"stripe fake listening on {url} (webhooks → {args.webhook_url or 'outbox only'})", flush=True)
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    fake.stop()


if __name__ == "__main__":
    main()
