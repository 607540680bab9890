// Independent checker used by the devcert integration tests (compiled at test
// time with javac). It does what an MQTT client built on the JDK does with the
// seed's files: load client_pkcs8.key with PKCS8EncodedKeySpec, load
// client_chain.crt with CertificateFactory, put both in a KeyStore and
// initialise an SSLContext through a KeyManagerFactory.
//
// Usage: java CheckKey KEY_FILE CHAIN_FILE
// Prints "OK <alg> <n> certs" and exits 0, or prints the failure and exits 1.
import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.KeyFactory;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.Signature;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collection;
import java.util.List;
import javax.net.ssl.KeyManager;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.X509KeyManager;

public class CheckKey {
    static byte[] pkcs8Der(byte[] file) {
        String text = new String(file, StandardCharsets.US_ASCII);
        String begin = "-----BEGIN PRIVATE KEY-----";
        String end = "-----END PRIVATE KEY-----";
        int b = text.indexOf(begin);
        if (b < 0) {
            if (text.contains("-----BEGIN")) {
                throw new IllegalArgumentException("PEM file without a 'BEGIN PRIVATE KEY' block");
            }
            return file; // DER
        }
        int e = text.indexOf(end, b);
        String body = text.substring(b + begin.length(), e).replaceAll("\\s", "");
        return Base64.getDecoder().decode(body);
    }

    public static void main(String[] args) throws Exception {
        try {
            byte[] der = pkcs8Der(Files.readAllBytes(Paths.get(args[0])));
            PKCS8EncodedKeySpec spec = new PKCS8EncodedKeySpec(der);
            PrivateKey key = null;
            String alg = null;
            Exception last = null;
            for (String a : new String[] {"EC", "RSA"}) {
                try {
                    key = KeyFactory.getInstance(a).generatePrivate(spec);
                    alg = a;
                    break;
                } catch (Exception ex) {
                    last = ex;
                }
            }
            if (key == null) {
                throw new Exception("PKCS8EncodedKeySpec rejected by EC and RSA KeyFactory: " + last);
            }

            CertificateFactory cf = CertificateFactory.getInstance("X.509");
            Collection<? extends Certificate> got =
                cf.generateCertificates(new ByteArrayInputStream(Files.readAllBytes(Paths.get(args[1]))));
            List<X509Certificate> chain = new ArrayList<>();
            for (Certificate c : got) {
                chain.add((X509Certificate) c);
            }
            if (chain.isEmpty()) {
                throw new Exception("no certificate in " + args[1]);
            }

            // The private key must belong to the leaf (first) certificate.
            String sigAlg = alg.equals("EC") ? "SHA256withECDSA" : "SHA256withRSA";
            byte[] msg = "devcert java check".getBytes(StandardCharsets.UTF_8);
            Signature s = Signature.getInstance(sigAlg);
            s.initSign(key);
            s.update(msg);
            byte[] sig = s.sign();
            Signature v = Signature.getInstance(sigAlg);
            v.initVerify(chain.get(0).getPublicKey());
            v.update(msg);
            if (!v.verify(sig)) {
                throw new Exception("private key does not match the first certificate of the chain");
            }
            // Each certificate must be signed by the next one.
            for (int i = 0; i + 1 < chain.size(); i++) {
                chain.get(i).verify(chain.get(i + 1).getPublicKey());
            }

            KeyStore ks = KeyStore.getInstance("PKCS12");
            ks.load(null, null);
            char[] pw = "changeit".toCharArray();
            ks.setKeyEntry("device", key, pw, chain.toArray(new Certificate[0]));
            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(ks, pw);
            SSLContext ctx = SSLContext.getInstance("TLS");
            ctx.init(kmf.getKeyManagers(), null, null);
            ctx.createSSLEngine().setUseClientMode(true);
            X509KeyManager km = null;
            for (KeyManager m : kmf.getKeyManagers()) {
                if (m instanceof X509KeyManager) {
                    km = (X509KeyManager) m;
                }
            }
            if (km == null || km.getPrivateKey("device") == null) {
                throw new Exception("KeyManager does not expose the device key");
            }
            String[] aliases = km.getClientAliases(alg, null);
            if (aliases == null || aliases.length == 0) {
                throw new Exception("KeyManager offers no client alias for " + alg);
            }
            System.out.println("OK " + alg + " " + chain.size() + " certs");
        } catch (Exception e) {
            System.out.println("FAILED: " + e);
            System.exit(1);
        }
    }
}
