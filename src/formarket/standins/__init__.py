"""Small working stand-ins for what cannot be reached from a test or the demo.

GitHub's REST API (`github`), an OpenAI-compatible upstream (`openai`), libvirt test-driver
hosts (`libvirt_test`) and a usage simulator (`usage_simulator`). Each speaks the real
interface, so the product reaches them through the same clients it uses in production; they
ship in the package because the demo starts them.
"""
