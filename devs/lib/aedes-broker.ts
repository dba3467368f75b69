// The embedded Node broker used where Mosquitto is not installed: aedes on 127.0.0.1:<port>.
// Run as a child process so that it can be killed and restarted by PID like Mosquitto.
import { createServer } from "node:net"
import { Aedes } from "aedes"

const port = Number(process.argv[2])
if (!port) {
    console.error("usage: aedes-broker.ts PORT")
    process.exit(2)
}
const broker = await Aedes.createBroker()
const server = createServer(broker.handle)
server.listen(port, "127.0.0.1", () => console.log(`aedes listening on 127.0.0.1:${port}`))
const stop = () => {
    server.close()
    broker.close(() => process.exit(0))
    setTimeout(() => process.exit(0), 1000).unref()
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
