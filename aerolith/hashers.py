"""Password hashing: Argon2id with OWASP's recommended parameters (19 MiB, t=2, p=1).

Django's defaults (100 MiB, parallelism 8) cost most of a second on a 2-core machine,
which alone would break the signup target (SPEC §2) and makes logins a denial-of-service
lever; OWASP's configuration keeps Argon2id's memory hardness at a fraction of the cost.
"""
from django.contrib.auth.hashers import Argon2PasswordHasher


class Argon2idHasher(Argon2PasswordHasher):
    algorithm = "argon2"  # same identifier: hashes made with other parameters still verify
    time_cost = 2
    memory_cost = 19 * 1024
    parallelism = 1
