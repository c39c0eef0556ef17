"""The baseline for the ack benchmark: a bare Flask route that reads the body and returns 204."""

from flask import Flask, Response, request


def create_app() -> Flask:
    """A Flask app with one PUT route that reads the body and answers 204."""
    app = Flask(__name__)

    @app.put("/notify")
    def notify() -> Response:
        request.get_data()
        return Response(status=204)

    return app
