"""The API's routes, one module per endpoint family; :data:`ROUTERS` in the order the app includes them."""

from gptkit.serve.routes import chat, completions, embeddings, models, tokenize

ROUTERS = [models.router, tokenize.router, completions.router, chat.router, embeddings.router]
