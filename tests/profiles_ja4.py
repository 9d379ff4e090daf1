"""Each client profile's JA4, and its resumption's where it resumes (one more extension,
pre_shared_key: a JA4 of its own, as real Chrome's): JA4 -> profile name, by the spec's
reference (``ja4ref``) over the hellos the package builds."""
from trafficgen.wire.hello import client_hello
from trafficgen.wire.profiles import PROFILES
from trafficgen.wire.tls import RESUMES, ticket_identity

from . import ja4ref

PROFILE_OF_JA4 = {p.ja4: name for name, p in PROFILES.items()}
PROFILE_OF_JA4.update({ja4ref.ja4(client_hello(PROFILES[name], "a.example", psk=ticket_identity(500))[0]): name
                       for name in PROFILES if RESUMES.get(name)})
