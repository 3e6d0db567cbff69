"""Running argv on many hosts over SSH (asyncssh) and locally."""
