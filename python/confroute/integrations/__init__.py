"""Integrations of confroute's decision into other tools. Each module imports its tool on
import, so nothing here loads until asked for: ``confroute.integrations.litellm`` (LiteLLM's
Router and proxy; ``pip install 'confroute[litellm]'``)."""
